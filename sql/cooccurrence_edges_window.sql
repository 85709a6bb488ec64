-- Item co-occurrence edges: two training interactions of one user co-occur when they are fewer
-- than $window positions apart (they fit in one window of $window consecutive interactions).
-- weight = number of distinct users; both directions are emitted, self-pairs are not.
-- An equi-join on (user, position + offset) keeps this linear in the number of interactions.
WITH train AS (
    SELECT * FROM training_interactions($dataset)
),
pairs AS (
    SELECT DISTINCT a.user_index, least(a.item_index, b.item_index) AS i, greatest(a.item_index, b.item_index) AS j
    FROM train AS a
    CROSS JOIN range(1, $window) AS offsets(d)
    JOIN train AS b ON b.user_index = a.user_index AND b.position = a.position + offsets.d
    WHERE a.item_index <> b.item_index
),
counted AS (
    SELECT i, j, count(*) AS weight FROM pairs GROUP BY i, j
)
SELECT i AS src_item_index, j AS dst_item_index, weight FROM counted
UNION ALL
SELECT j AS src_item_index, i AS dst_item_index, weight FROM counted
ORDER BY src_item_index, dst_item_index
