-- The evaluation that counts as current for each (dataset, model, variant, tokenizer, profile, scheme, seed):
-- the newest one whose validation NDCG@10 beats the newest popularity evaluation of the same
-- dataset and scheme. Popularity itself is always current (it is the floor).
CREATE OR REPLACE VIEW current_evaluations AS
WITH evaluations AS (
    SELECT dataset, model, variant, tokenizer, profile, scheme, seed, evaluation_id, mlflow_run_id,
           max(created_at) AS created_at,
           max(value) FILTER (WHERE split = 'valid' AND metric = 'ndcg' AND k = 10) AS valid_ndcg_10
    FROM metrics
    GROUP BY ALL
),
floor AS (
    SELECT dataset, scheme, arg_max(valid_ndcg_10, created_at) AS popularity_valid_ndcg_10
    FROM evaluations
    WHERE model = 'popularity'
    GROUP BY dataset, scheme
),
eligible AS (
    SELECT e.*, f.popularity_valid_ndcg_10
    FROM evaluations AS e
    JOIN floor AS f USING (dataset, scheme)
    WHERE e.model = 'popularity' OR e.valid_ndcg_10 > f.popularity_valid_ndcg_10
)
SELECT * EXCLUDE (rn)
FROM (
    SELECT *, row_number() OVER (
        PARTITION BY dataset, model, variant, tokenizer, profile, scheme, seed ORDER BY created_at DESC
    ) AS rn
    FROM eligible
)
WHERE rn = 1
