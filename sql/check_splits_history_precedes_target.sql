-- Every example's history must be exactly the interactions right before its target position,
-- so no target (valid, test or train) is visible in its own history. Returns mismatching entries.
WITH examples AS (
    SELECT row_number() OVER () AS example_id, scheme, split, user_index, target_position, target_item_index, history
    FROM splits WHERE dataset = $dataset
),
entries AS (
    SELECT e.example_id, e.user_index, e.target_position,
           e.target_position - len(e.history) + h.ord - 1 AS expected_position, h.item_index
    FROM examples AS e, unnest(e.history) WITH ORDINALITY AS h(item_index, ord)
)
SELECT e.example_id, e.user_index, e.target_position, e.expected_position, e.item_index, i.item_index AS actual_item
FROM entries AS e
LEFT JOIN interactions AS i
  ON i.dataset = $dataset AND i.user_index = e.user_index AND i.position = e.expected_position
WHERE i.item_index IS DISTINCT FROM e.item_index OR e.expected_position < 0
UNION ALL
SELECT x.example_id, x.user_index, x.target_position, x.target_position, x.target_item_index, i.item_index
FROM examples AS x
LEFT JOIN interactions AS i
  ON i.dataset = $dataset AND i.user_index = x.user_index AND i.position = x.target_position
WHERE i.item_index IS DISTINCT FROM x.target_item_index
