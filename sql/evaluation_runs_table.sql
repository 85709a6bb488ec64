-- One row per evaluation of a trained model: what its training cost, beside the figures in `metrics`.
CREATE TABLE IF NOT EXISTS evaluation_runs (
    dataset VARCHAR NOT NULL,
    evaluation_id VARCHAR NOT NULL,
    seed INTEGER,
    steps BIGINT,               -- optimizer steps over all resumed calls
    train_seconds DOUBLE,       -- training wall-clock time (validation included)
    parameters BIGINT,
    batch_size INTEGER,
    device VARCHAR,             -- the train setting ("auto", "cpu", "cuda", ...)
    best_valid_step BIGINT,     -- the step of best.pt
    created_at TIMESTAMP WITH TIME ZONE NOT NULL
)
