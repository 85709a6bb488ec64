-- One codebook variant's Semantic IDs of one dataset: a row per (item, level).
SELECT item_index, level, code
FROM item_semantic_ids
WHERE dataset = $dataset AND tokenizer = $tokenizer
ORDER BY item_index, level
