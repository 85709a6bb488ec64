-- Rows already recorded under one evaluation id (recording the same evaluation twice is refused).
SELECT count(*) AS n
FROM metrics
WHERE evaluation_id = $evaluation_id
