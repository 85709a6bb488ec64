-- Per-user test ranks of every current evaluation of one dataset: what the significance tests resample.
SELECT c.model, c.variant, c.tokenizer, c.profile, c.scheme, c.seed, r.user_index, r.rank
FROM current_evaluations AS c
JOIN evaluation_ranks AS r USING (evaluation_id)
WHERE c.dataset = $dataset AND r.split = 'test'
