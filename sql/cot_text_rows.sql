-- The teacher chains of thought of one split scheme's training examples, as segments (the explicit-CoT baseline's text).
SELECT user_index, target_position, segments
FROM cot_texts
WHERE dataset = $dataset AND scheme = $scheme
ORDER BY user_index, target_position
