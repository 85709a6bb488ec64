-- The training examples of one split scheme that a teacher chain of thought is written for (LASAR §2.3).
SELECT user_index, target_position, target_item_index, history
FROM splits
WHERE dataset = $dataset AND scheme = $scheme AND split = 'train'
ORDER BY user_index, target_position
