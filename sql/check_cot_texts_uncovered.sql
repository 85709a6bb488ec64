-- Training examples of the CoT's scheme without a chain of thought, and CoT rows of no training example.
WITH cot AS (SELECT DISTINCT scheme FROM cot_texts WHERE dataset = $dataset),
examples AS (
    SELECT s.user_index, s.target_position
    FROM splits s JOIN cot USING (scheme)
    WHERE s.dataset = $dataset AND s.split = 'train'
),
written AS (SELECT user_index, target_position FROM cot_texts WHERE dataset = $dataset)
SELECT 'no chain of thought' AS problem, * FROM (SELECT * FROM examples EXCEPT SELECT * FROM written)
UNION ALL
SELECT 'not a training example' AS problem, * FROM (SELECT * FROM written EXCEPT SELECT * FROM examples)
LIMIT 100
