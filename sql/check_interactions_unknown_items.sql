-- Interactions whose item has no row in `items` (must be none).
SELECT i.user_index, i.position, i.item_index, i.item_id
FROM interactions AS i
ANTI JOIN items AS t ON t.dataset = i.dataset AND t.item_index = i.item_index AND t.item_id = i.item_id
WHERE i.dataset = $dataset
