"""Seeds in an evaluation's identity, per-user ranks, the seed summary, the reproduction view and significance."""

import numpy as np
import pandas as pd
import pytest

from genrec_assets.defs.models.assets import write_metrics
from genrec_assets.defs.resources import Warehouse
from genrec_ml import warehouse
from genrec_ml.evaluation import rank_rows
from genrec_ml.published import read_published_results
from genrec_ml.reproduction import plot_reproduction, refresh_reproduction

POPULARITY = {"model": "popularity", "variant": "default", "tokenizer": None, "profile": "none", "scheme": "loo"}


def labels(model: str, seed: int, tokenizer: str | None = "rq_vae", variant: str = "default") -> dict:
    return {"model": model, "variant": variant, "tokenizer": tokenizer, "profile": "cpu", "scheme": "loo",
            "seed": seed}


def metric_frame(ranks: np.ndarray) -> pd.DataFrame:
    """valid/test recall@10 and ndcg@10 of one evaluation, computed from its test ranks."""
    inside = (ranks >= 1) & (ranks <= 10)
    ndcg = float(np.where(inside, 1 / np.log2(np.maximum(ranks, 1) + 1), 0).mean())
    return pd.DataFrame([
        {"split": "valid", "metric": "ndcg", "k": 10, "value": 0.5},
        {"split": "test", "metric": "recall", "k": 10, "value": float(inside.mean())},
        {"split": "test", "metric": "ndcg", "k": 10, "value": ndcg},
    ])


def record(store, label, ranks, train_seconds=60.0):
    users = np.arange(len(ranks))
    topk = np.full((len(ranks), 20), -1)  # top-20 lists, as the evaluation keeps
    for row, rank in enumerate(ranks):
        if rank:
            topk[row, rank - 1] = 100 + row  # target of user `row` is item 100 + row
    frame = rank_rows(topk, 100 + users, users, "test")
    assert frame["rank"].tolist() == list(ranks)
    info = {"experiment": {"seed": label.get("seed")}, "steps": 10, "train_seconds": train_seconds,
            "parameters": 1000, "train_config": {"batch_size": 256, "device": "cpu"}, "best_valid": {"step": 10}}
    return write_metrics(store, "beauty", label, metric_frame(np.asarray(ranks)), None, "run", info, frame)


@pytest.fixture
def store(tmp_path) -> Warehouse:
    store = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    write_metrics(store, "beauty", POPULARITY, metric_frame(np.zeros(4, dtype=int)).assign(value=0.01), None, "r0")
    return store


def sql(store, statement: str) -> pd.DataFrame:
    with store.connect(read_only=True) as con:
        return con.execute(statement).df()


def test_each_seed_is_its_own_current_evaluation_and_the_summary_averages_them(store):
    record(store, labels("tiger", 0), [1, 0, 2, 11], train_seconds=50)
    record(store, labels("tiger", 1), [1, 1, 0, 0], train_seconds=70)
    current = sql(store, "SELECT seed FROM current_evaluations WHERE model = 'tiger' ORDER BY seed")
    assert current["seed"].tolist() == [0, 1]
    summary = sql(store, "SELECT * FROM seed_summary WHERE model = 'tiger' AND split = 'test' AND metric = 'recall'")
    row = summary.iloc[0]
    # recall@10: seed 0 = 2/4, seed 1 = 2/4 -> mean .5, std 0; training time averaged
    assert (row["mean"], row["std"], row["n_seeds"], list(row["seeds"])) == (0.5, 0.0, 2, [0, 1])
    assert row["mean_train_seconds"] == pytest.approx(60.0)


def test_every_metric_recomputes_from_the_ranks_table(store):
    record(store, labels("tiger", 0), [1, 0, 2, 11])
    recomputed = sql(store, """
        SELECT avg(CASE WHEN rank BETWEEN 1 AND 10 THEN 1 ELSE 0 END) AS recall_10,
               avg(CASE WHEN rank BETWEEN 1 AND 10 THEN 1 / log2(rank + 1) ELSE 0 END) AS ndcg_10
        FROM evaluation_ranks""").iloc[0]
    stored = sql(store, "SELECT metric, value FROM metrics WHERE model = 'tiger' AND split = 'test'")
    stored = dict(zip(stored["metric"], stored["value"], strict=True))
    assert recomputed["recall_10"] == pytest.approx(stored["recall"]) == 0.5
    assert recomputed["ndcg_10"] == pytest.approx(stored["ndcg"]) == pytest.approx((1 + 1 / np.log2(3)) / 4)


def published_csv(path, rows) -> str:
    columns = ["dataset", "method", "model", "variant", "tokenizer", "protocol", "metric", "reported_metric", "k",
               "value", "source", "notes"]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return str(path)


def test_reproduction_puts_ours_beside_published_with_the_gap_and_tests_methods_against_tiger(store, tmp_path):
    record(store, labels("tiger", 0), [0, 0, 2, 0])
    record(store, labels("s2gr", 0, "coba_rqvae"), [1, 3, 2, 0])
    record(store, labels("s2gr", 1, "coba_rqvae"), [1, 0, 2, 4])
    csv = published_csv(tmp_path / "published.csv", [
        ("beauty", "TIGER", "tiger", "default", "rq_vae", "loo", "recall", "HR", 10, 0.4, "Paper Table 2", ""),
        ("beauty", "S²GR", "s2gr", "default", "coba_rqvae", "loo", "recall", "HR", 10, 0.5, "Paper Table 2", ""),
        ("beauty", "TIGER (other codes)", "tiger", "default", "letter", "loo", "recall", "HR", 10, 0.9, "T3", ""),
        ("beauty", "TIGER 8:1:1", "tiger", "default", "rq_vae", "ratio", "recall", "HR", 10, 0.9, "T4", ""),
    ])
    with store.connect() as con:
        table, significance = refresh_reproduction(con, "beauty", n_boot=200, published=csv)
    by_model = table.set_index("model")
    assert set(table["source"]) == {"Paper Table 2"}  # another codebook or split protocol never matches
    assert by_model.loc["tiger", "ours"] == 0.25 and by_model.loc["tiger", "published"] == 0.4
    assert by_model.loc["tiger", "relative_gap"] == pytest.approx(0.25 / 0.4 - 1)
    assert by_model.loc["s2gr", "ours"] == 0.75 and by_model.loc["s2gr", "n_seeds"] == 2
    row = significance.set_index("metric").loc["recall"]
    # per user, s2gr averaged over seeds: (1, .5, 1, .5); tiger: (0, 0, 1, 0)
    assert (row["mean"], row["baseline_mean"], row["diff"]) == (0.75, 0.25, 0.5)
    assert row["baseline_model"] == "tiger" and row["seeds"] == [0, 1] and row["n_users"] == 4
    stored = sql(store, "SELECT * FROM significance")
    assert len(stored) == 2 and set(stored["metric"]) == {"recall", "ndcg"}
    assert plot_reproduction(table, "beauty") is not None


def test_the_repository_csv_loads_and_a_bad_row_is_named(tmp_path):
    frame = read_published_results()
    assert len(frame) > 100 and frame["value"].between(0, 1).all()
    beauty = frame[(frame["dataset"] == "amazon-beauty") & (frame["model"] == "tiger") & (frame["metric"] == "recall")
                   & (frame["k"] == 10) & (frame["source"] == "S²GR Table 2")]
    assert beauty["value"].tolist() == [0.0728]  # shared/data/README.md's reference figure
    bad = published_csv(tmp_path / "bad.csv", [
        ("beauty", "TIGER", "tiger", "default", "", "loo", "recall", "HR", 10, 0.4, "T", ""),
        ("beauty", "S²GR", "s2gr", "default", "", "loo", "recall", "HR", 10, 4.5, "T", "percent?"),
    ])
    with pytest.raises(ValueError, match=r"bad.csv, line 3: value must be a fraction"):
        read_published_results(bad)


def test_a_warehouse_from_before_seeds_gains_the_column(tmp_path):
    path = tmp_path / "old.duckdb"
    with warehouse.connect(path) as con:
        con.execute(warehouse.sql("metrics_table").replace("    seed INTEGER,\n", ""))
        con.execute("INSERT INTO metrics VALUES ('beauty', 'tiger', 'default', 'rq_vae', 'smoke', 'loo', 'test', "
                    "'ndcg', 10, 0.1, 'old', NULL, NULL, now())")
    store = Warehouse(path=str(path))
    record(store, labels("tiger", 2), [1, 0])
    seeds = sql(store, "SELECT evaluation_id = 'old' AS old, seed FROM metrics WHERE split = 'test' ORDER BY old")
    assert seeds["seed"].tolist()[0] == 2 and pd.isna(seeds["seed"].tolist()[-1])


def test_a_published_row_without_a_variant_sits_beside_every_variant_of_its_model(store, tmp_path):
    record(store, labels("rearec", 0, None, "erl"), [1, 0, 0, 0])
    record(store, labels("rearec", 0, None, "prl"), [1, 2, 0, 0])
    record(store, labels("sasrec", 0, None), [1, 2, 3, 0])
    csv = published_csv(tmp_path / "published.csv", [
        ("beauty", "ReaRec", "rearec", "", "", "loo", "recall", "HR", 10, 0.4, "S²GR Table 2", "ERL or PRL?"),
        ("beauty", "ReaRec", "rearec", "prl", "", "loo", "recall", "HR", 10, 0.6, "LASAR Table 1", "PRL"),
        ("beauty", "SASRec", "sasrec", "bce", "", "loo", "recall", "HR", 10, 0.9, "T9", "another loss"),
    ])
    with store.connect() as con:
        table, _ = refresh_reproduction(con, "beauty", n_boot=50, published=csv)
    got = sorted(zip(table["model"], table["variant"], table["source"], table["ours"], strict=True))
    assert got == [("rearec", "erl", "S²GR Table 2", 0.25), ("rearec", "prl", "LASAR Table 1", 0.5),
                   ("rearec", "prl", "S²GR Table 2", 0.5)]  # a named variant still matches only itself
