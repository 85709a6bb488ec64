-- Item-to-code ratio, code utilisation and collision rate of one codebook variant of one dataset.
SELECT any_value(icr) AS icr, any_value(cur) AS cur, any_value(collision_rate) AS collision_rate
FROM codebook_utilization
WHERE dataset = $dataset AND tokenizer = $tokenizer
