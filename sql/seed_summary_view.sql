-- Mean ± sample standard deviation over seeds of every current evaluation's metrics, per
-- (dataset, model, variant, tokenizer, profile, scheme, split, metric, k), with the training cost.
-- std is NULL with one seed.
CREATE OR REPLACE VIEW seed_summary AS
SELECT c.dataset, c.model, c.variant, c.tokenizer, c.profile, c.scheme, m.split, m.metric, m.k,
       avg(m.value) AS mean,
       stddev_samp(m.value) AS std,
       count(*) AS n_seeds,
       list(c.seed ORDER BY c.seed) AS seeds,
       avg(r.train_seconds) AS mean_train_seconds,
       avg(r.steps) AS mean_steps
FROM current_evaluations AS c
JOIN metrics AS m USING (evaluation_id)
LEFT JOIN evaluation_runs AS r USING (evaluation_id)
GROUP BY ALL
