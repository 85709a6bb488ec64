-- Every evaluation of every model, appended: one row per (evaluation, split, metric, k).
-- k is -1 for metrics without a cut-off (mrr). tokenizer is NULL for item-id models; seed (initial weights
-- and training order) is part of an evaluation's identity, NULL for popularity and for rows older than it.
CREATE TABLE IF NOT EXISTS metrics (
    dataset VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    variant VARCHAR NOT NULL,
    tokenizer VARCHAR,
    profile VARCHAR NOT NULL,
    scheme VARCHAR NOT NULL,
    seed INTEGER,
    split VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    k INTEGER NOT NULL,
    value DOUBLE NOT NULL,
    evaluation_id VARCHAR NOT NULL,
    mlflow_run_id VARCHAR,
    dagster_run_id VARCHAR,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL
)
