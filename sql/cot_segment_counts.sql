-- How many training examples have each CoT segment count (the policy head's label), with their mean
-- history length and label diversity (LASAR Table 8).
SELECT n_segments, count(*) AS examples, count(*) / sum(count(*)) OVER () AS share,
       avg(history_length) AS mean_history_length, avg(label_diversity) AS mean_label_diversity
FROM cot_texts
WHERE dataset = $dataset
GROUP BY n_segments
ORDER BY n_segments
