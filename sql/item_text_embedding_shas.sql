-- The text hash behind each stored text embedding of one dataset, in item order (re-embed only what changed).
SELECT text_sha
FROM item_text_embeddings
WHERE dataset = $dataset
ORDER BY item_index
