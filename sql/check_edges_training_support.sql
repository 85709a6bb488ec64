-- Edges heavier than the number of users holding both items in their TRAINING period. An edge
-- built from valid/test interactions lacks that support, so this finds leaked edges (must be none).
-- Independent of how windows are formed: weight can never exceed the training co-holders.
WITH train AS (
    SELECT DISTINCT user_index, item_index FROM training_interactions($dataset)
),
support AS (
    SELECT e.src_item_index, e.dst_item_index, e.weight, count(b.user_index) AS co_holders
    FROM cooccurrence_edges AS e
    LEFT JOIN train AS a ON a.item_index = e.src_item_index
    LEFT JOIN train AS b ON b.item_index = e.dst_item_index AND b.user_index = a.user_index
    WHERE e.dataset = $dataset
    GROUP BY ALL
)
SELECT * FROM support WHERE weight > co_holders
