-- LASAR's anchor states of one Stage-1 run (its seed folder), one row per training example and CoT segment.
SELECT user_index, target_position, segment, state
FROM cot_anchor_states
WHERE dataset = $dataset AND scheme = $scheme AND stage1 = $stage1
