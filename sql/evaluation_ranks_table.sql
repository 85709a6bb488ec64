-- Where each test user's target landed in an evaluation's top-K list: rank 1..K, 0 when outside it.
-- Every cut-off metric can be recomputed from it, and two models compared user by user:
--   recall@k = avg(rank BETWEEN 1 AND k), ndcg@k = avg(CASE WHEN rank BETWEEN 1 AND k THEN 1 / log2(rank + 1) ELSE 0 END)
CREATE TABLE IF NOT EXISTS evaluation_ranks (
    dataset VARCHAR NOT NULL,
    evaluation_id VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    user_index BIGINT NOT NULL,
    target_item_index BIGINT NOT NULL,
    rank INTEGER NOT NULL
)
