-- Table macro: one dataset's interactions in the TRAINING period only, i.e. before each user's
-- first leave-one-out valid/test target. Users without evaluation targets keep all their rows.
-- Anything built from it (co-occurrence edges) cannot leak valid or test targets.
CREATE OR REPLACE TEMP MACRO training_interactions(ds) AS TABLE
WITH first_eval AS (
    SELECT user_index, min(target_position) AS first_eval_position
    FROM splits
    WHERE dataset = ds AND scheme = 'loo' AND split <> 'train'
    GROUP BY user_index
)
SELECT i.user_index, i.item_index, i.position, i.timestamp
FROM interactions AS i
LEFT JOIN first_eval AS f USING (user_index)
WHERE i.dataset = ds
  AND (f.first_eval_position IS NULL OR i.position < f.first_eval_position)
