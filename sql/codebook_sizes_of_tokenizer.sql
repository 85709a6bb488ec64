-- Codes per quantiser level of one codebook variant of one dataset, level by level.
SELECT codebook_size
FROM codebook_utilization
WHERE dataset = $dataset AND tokenizer = $tokenizer
ORDER BY level
