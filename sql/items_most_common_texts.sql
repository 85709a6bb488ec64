-- The texts most items of one dataset share, largest group first (ties by text, so the order is stable).
SELECT text, count(*) AS items
FROM items
WHERE dataset = $dataset
GROUP BY text
ORDER BY items DESC, text
LIMIT $top
