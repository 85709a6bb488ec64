-- Codes outside [0, codebook_size) at a quantization level, or negative at the disambiguation
-- level (which has no codebook row). Must be none.
SELECT s.item_index, s.level, s.code, u.codebook_size
FROM item_semantic_ids AS s
LEFT JOIN codebook_utilization AS u
  ON u.dataset = s.dataset AND u.tokenizer = s.tokenizer AND u.level = s.level
WHERE s.dataset = $dataset AND s.tokenizer = $tokenizer
  AND (s.code < 0 OR (u.codebook_size IS NOT NULL AND s.code >= u.codebook_size))
