-- Validation NDCG@10 of a model's newest evaluation and of the newest popularity evaluation of
-- the same dataset and scheme. One row; NULLs when either is missing.
WITH newest AS (
    SELECT evaluation_id, scheme
    FROM metrics
    WHERE dataset = $dataset AND model = $model AND variant = $variant
    ORDER BY created_at DESC
    LIMIT 1
)
SELECT
    n.evaluation_id,
    (SELECT value FROM metrics
     WHERE evaluation_id = n.evaluation_id AND split = 'valid' AND metric = 'ndcg' AND k = 10) AS model_ndcg_10,
    (SELECT arg_max(value, created_at) FROM metrics
     WHERE dataset = $dataset AND model = 'popularity' AND scheme = n.scheme
       AND split = 'valid' AND metric = 'ndcg' AND k = 10) AS popularity_ndcg_10
FROM newest AS n
