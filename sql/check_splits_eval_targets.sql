-- Leave-one-out: users with >= 3 interactions must have exactly one valid and one test target.
WITH lengths AS (
    SELECT user_index, count(*) AS n FROM interactions WHERE dataset = $dataset GROUP BY user_index
),
targets AS (
    SELECT user_index,
           count(*) FILTER (WHERE split = 'valid') AS n_valid,
           count(*) FILTER (WHERE split = 'test') AS n_test
    FROM splits WHERE dataset = $dataset AND scheme = 'loo'
    GROUP BY user_index
)
SELECT l.user_index, l.n, coalesce(t.n_valid, 0) AS n_valid, coalesce(t.n_test, 0) AS n_test
FROM lengths AS l LEFT JOIN targets AS t USING (user_index)
WHERE l.n >= 3 AND (coalesce(t.n_valid, 0) <> 1 OR coalesce(t.n_test, 0) <> 1)
