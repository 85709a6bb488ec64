-- Full SIDs (all levels, disambiguation included) shared by more than one item. Must be none:
-- constrained decoding maps a generated SID back to exactly one item.
WITH sids AS (
    SELECT item_index, list(code ORDER BY level) AS sid
    FROM item_semantic_ids WHERE dataset = $dataset AND tokenizer = $tokenizer
    GROUP BY item_index
)
SELECT sid, count(*) AS items, list(item_index ORDER BY item_index) AS item_indices
FROM sids GROUP BY sid HAVING count(*) > 1
