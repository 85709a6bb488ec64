-- Examples whose anchor states (per Stage-1 run) do not number their CoT's segments: missing, extra or partial.
WITH runs AS (SELECT DISTINCT stage1 FROM cot_anchor_states WHERE dataset = $dataset),
expected AS (
    SELECT r.stage1, c.user_index, c.target_position, c.n_segments
    FROM cot_texts c CROSS JOIN runs r
    WHERE c.dataset = $dataset
),
stored AS (
    SELECT stage1, user_index, target_position, count(*) AS n_states, max(segment) + 1 AS segments_spanned
    FROM cot_anchor_states
    WHERE dataset = $dataset
    GROUP BY ALL
)
SELECT coalesce(e.stage1, s.stage1) AS stage1, coalesce(e.user_index, s.user_index) AS user_index,
       coalesce(e.target_position, s.target_position) AS target_position, e.n_segments, s.n_states
FROM expected e FULL OUTER JOIN stored s USING (stage1, user_index, target_position)
WHERE e.n_segments IS DISTINCT FROM s.n_states OR s.segments_spanned IS DISTINCT FROM s.n_states
LIMIT 100
