-- How many items one dataset's catalog holds.
SELECT count(*) AS n
FROM items
WHERE dataset = $dataset
