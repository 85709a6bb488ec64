-- Figures published by the method papers (published/published_results.csv; see published/README.md):
-- one row per (paper table, dataset, method, metric, k). model / variant / tokenizer say how genrec's
-- `metrics` labels the same run; protocol is genrec's split scheme (loo, ratio) or `other`.
CREATE TABLE IF NOT EXISTS published_results (
    dataset VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    model VARCHAR,
    variant VARCHAR,
    tokenizer VARCHAR,
    protocol VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    reported_metric VARCHAR NOT NULL,
    k INTEGER NOT NULL,
    value DOUBLE NOT NULL,
    source VARCHAR NOT NULL,
    notes VARCHAR
)
