-- Each item's category label (the first entry of its category list; '' when it has none), by item index.
SELECT item_index, category
FROM items
WHERE dataset = $dataset
ORDER BY item_index
