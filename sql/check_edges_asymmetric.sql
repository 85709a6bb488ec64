-- Edges whose reverse edge is missing or has another weight, plus self-loops (must be none).
SELECT e.src_item_index, e.dst_item_index, e.weight, r.weight AS reverse_weight
FROM cooccurrence_edges AS e
LEFT JOIN cooccurrence_edges AS r
  ON r.dataset = e.dataset AND r.src_item_index = e.dst_item_index AND r.dst_item_index = e.src_item_index
WHERE e.dataset = $dataset
  AND (r.weight IS DISTINCT FROM e.weight OR e.src_item_index = e.dst_item_index)
