-- Users or items with fewer than the k_core interactions recorded in `cleaning_runs` (must be none).
WITH k AS (
    SELECT k_core FROM cleaning_runs WHERE dataset = $dataset
),
user_counts AS (
    SELECT 'user' AS kind, user_index AS idx, count(*) AS n FROM interactions WHERE dataset = $dataset GROUP BY user_index
),
item_counts AS (
    SELECT 'item' AS kind, item_index AS idx, count(*) AS n FROM interactions WHERE dataset = $dataset GROUP BY item_index
)
SELECT c.kind, c.idx, c.n, k.k_core
FROM (SELECT * FROM user_counts UNION ALL SELECT * FROM item_counts) AS c, k
WHERE c.n < k.k_core
