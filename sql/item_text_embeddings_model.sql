-- The sentence-transformers model that embedded one dataset's item texts.
SELECT any_value(model) AS model
FROM item_text_embeddings
WHERE dataset = $dataset
