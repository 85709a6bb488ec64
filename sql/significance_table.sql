-- Paired bootstrap of a method against its baseline on the same test users (genrec_ml.eval.significance):
-- per-user metric averaged over each side's seeds, users resampled with replacement n_boot times.
-- diff = mean - baseline_mean; [ci_low, ci_high] its percentile interval; p_value two-sided.
CREATE TABLE IF NOT EXISTS significance (
    dataset VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    variant VARCHAR NOT NULL,
    tokenizer VARCHAR,
    profile VARCHAR NOT NULL,
    scheme VARCHAR NOT NULL,
    baseline_model VARCHAR NOT NULL,
    baseline_variant VARCHAR NOT NULL,
    baseline_tokenizer VARCHAR,
    metric VARCHAR NOT NULL,
    k INTEGER NOT NULL,
    mean DOUBLE NOT NULL,
    baseline_mean DOUBLE NOT NULL,
    diff DOUBLE NOT NULL,
    ci_low DOUBLE NOT NULL,
    ci_high DOUBLE NOT NULL,
    p_value DOUBLE NOT NULL,
    n_users BIGINT NOT NULL,
    seeds INTEGER[],
    baseline_seeds INTEGER[],
    n_boot INTEGER NOT NULL,
    confidence DOUBLE NOT NULL
)
