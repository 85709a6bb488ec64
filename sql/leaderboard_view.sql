-- Test metrics of every current evaluation (see current_evaluations), best test NDCG@10 first.
CREATE OR REPLACE VIEW leaderboard AS
SELECT c.dataset, c.model, c.variant, c.tokenizer, c.profile, c.scheme, c.seed,
       max(m.value) FILTER (WHERE m.metric = 'recall' AND m.k = 5) AS recall_5,
       max(m.value) FILTER (WHERE m.metric = 'recall' AND m.k = 10) AS recall_10,
       max(m.value) FILTER (WHERE m.metric = 'recall' AND m.k = 20) AS recall_20,
       max(m.value) FILTER (WHERE m.metric = 'ndcg' AND m.k = 5) AS ndcg_5,
       max(m.value) FILTER (WHERE m.metric = 'ndcg' AND m.k = 10) AS ndcg_10,
       max(m.value) FILTER (WHERE m.metric = 'ndcg' AND m.k = 20) AS ndcg_20,
       max(m.value) FILTER (WHERE m.metric = 'mrr') AS mrr,
       max(m.value) FILTER (WHERE m.metric = 'divr' AND m.k = 10) AS divr_10,
       max(m.value) FILTER (WHERE m.metric = 'orr' AND m.k = 10) AS orr_10,
       c.valid_ndcg_10, c.popularity_valid_ndcg_10, c.created_at, c.mlflow_run_id, c.evaluation_id
FROM current_evaluations AS c
JOIN metrics AS m USING (evaluation_id)
WHERE m.split = 'test'
GROUP BY ALL
ORDER BY c.dataset, ndcg_10 DESC NULLS LAST
