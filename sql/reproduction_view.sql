-- Our figure beside the published one: every test metric of a current evaluation (mean over its seeds,
-- `seed_summary`) next to each published figure of the same dataset, model, variant, split protocol,
-- metric and cut-off. A published row that names a tokenizer matches only runs on that codebook; one without a
-- variant (the paper does not say which, e.g. ReaRec's ERL or PRL in S²GR and REG4Rec) matches every variant.
-- relative_gap = ours / published - 1 (negative: we are below the paper). HR and Recall are one metric
-- here (one target per user); `notes` says where the paper's protocol still differs (user filters,
-- dataset versions, backbones), so read it before drawing conclusions.
CREATE OR REPLACE VIEW reproduction AS
SELECT s.dataset, s.model, s.variant, s.tokenizer, s.profile, s.scheme, s.metric, s.k,
       s.mean AS ours, s.std AS ours_std, s.n_seeds, s.seeds,
       p.value AS published, s.mean / p.value - 1 AS relative_gap,
       p.reported_metric, p.source, p.method AS published_method,
       s.mean_train_seconds AS train_seconds, s.mean_steps AS steps, p.notes
FROM seed_summary AS s
JOIN published_results AS p
  ON p.dataset = s.dataset AND p.model = s.model AND (p.variant IS NULL OR p.variant = s.variant)
 AND p.protocol = s.scheme
 AND p.metric = s.metric AND p.k = s.k AND (p.tokenizer IS NULL OR p.tokenizer = s.tokenizer)
WHERE s.split = 'test'
ORDER BY s.dataset, s.model, s.variant, s.profile, p.source, s.metric, s.k
