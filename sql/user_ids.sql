-- Each user's original id by user index (a CoT file may name users by either).
SELECT DISTINCT user_index, user_id
FROM interactions
WHERE dataset = $dataset
ORDER BY user_index
