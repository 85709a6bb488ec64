-- Each item's title, by item index (the decoder-only models' word vocabulary is built from them).
SELECT item_index, title
FROM items
WHERE dataset = $dataset
ORDER BY item_index
