-- Items of `items` without exactly one code at every level of the tokenizer's SIDs (must be none).
WITH levels AS (
    SELECT max(level) + 1 AS n_levels FROM item_semantic_ids WHERE dataset = $dataset AND tokenizer = $tokenizer
),
per_item AS (
    SELECT item_index, count(*) AS n_codes, count(DISTINCT level) AS n_distinct_levels
    FROM item_semantic_ids WHERE dataset = $dataset AND tokenizer = $tokenizer
    GROUP BY item_index
)
SELECT i.item_index, i.item_id, coalesce(p.n_codes, 0) AS n_codes, l.n_levels
FROM items AS i
CROSS JOIN levels AS l
LEFT JOIN per_item AS p USING (item_index)
WHERE i.dataset = $dataset
  AND (p.n_codes IS NULL OR p.n_codes <> l.n_levels OR p.n_distinct_levels <> l.n_levels)
