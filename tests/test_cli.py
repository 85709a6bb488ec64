"""Bundles and the command line: a run without Dagster sees exactly the warehouse's inputs, trains,
writes metrics.csv, and records it once into `metrics`."""

import json

import numpy as np
import pandas as pd
import pytest

from genrec_ml import warehouse
from genrec_ml.cli import main, read_metrics
from genrec_ml.errors import GenrecDataError
from genrec_ml.evaluation import evaluate_experiment
from genrec_ml.experiments import Catalog, read_run_info
from genrec_ml.inputs import read_bundle, write_bundle
from tests.test_experiments import N_ITEMS, SIZES, TINY_MODEL, TINY_TRAIN, experiment, splits_table


@pytest.fixture(autouse=True)
def untracked(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # tests/test_tracking.py tracks, into tmp_path


def catalog_with_clusters(sids: np.ndarray) -> Catalog:
    rng = np.random.default_rng(1)
    return Catalog(n_items=N_ITEMS, sids=sids, codebook_sizes=SIZES,
                   coarse_centroids=[rng.normal(size=(2, 3)).astype(np.float32) for _ in SIZES],
                   coarse_assignments=[np.array([0, 1, 1, 0]) for _ in SIZES])


@pytest.fixture
def bundle(tmp_path):
    splits, sids = splits_table()
    ratio = splits.assign(scheme="ratio").iloc[:7]  # another scheme the bundle must leave out
    folder = write_bundle(tmp_path / "bundle", pd.concat([splits, ratio]), catalog_with_clusters(sids),
                          dataset="toy", tokenizer="rq_kmeans")
    return folder, splits, sids


def test_bundle_round_trip_keeps_one_scheme_and_the_whole_catalog(bundle):
    folder, splits, sids = bundle
    read = read_bundle(folder)
    assert read.dataset == "toy" and read.meta["tokenizer"] == "rq_kmeans" and set(read.splits["scheme"]) == {"loo"}
    key = ["split", "user_index", "target_position"]
    got = read.splits.sort_values(key).reset_index(drop=True)
    want = splits.sort_values(key).reset_index(drop=True)
    assert got["target_item_index"].tolist() == want["target_item_index"].tolist()
    assert [list(h) for h in got["history"]] == [list(h) for h in want["history"]]
    expected = catalog_with_clusters(sids)
    assert np.array_equal(read.catalog.sids, sids) and read.catalog.codebook_sizes == SIZES
    for got_c, want_c in zip(read.catalog.coarse_centroids, expected.coarse_centroids, strict=True):
        assert np.array_equal(got_c, want_c)
    assert all(np.array_equal(a, b) for a, b in zip(read.catalog.coarse_assignments, expected.coarse_assignments,
                                                    strict=True))
    assert not folder.with_name("bundle.partial").exists()


def test_item_id_bundle_holds_only_the_item_count(tmp_path):
    splits, _ = splits_table()
    folder = write_bundle(tmp_path / "items", splits, Catalog(n_items=N_ITEMS), dataset="toy", tokenizer=None)
    read = read_bundle(folder)
    assert read.catalog.n_items == N_ITEMS and read.catalog.sids is None and read.catalog.coarse_centroids is None


@pytest.mark.parametrize("damage, match", [
    (lambda f: (f / "catalog.npz").unlink(), "catalog.npz: bundle file missing"),
    (lambda f: pd.read_parquet(f / "splits.parquet").iloc[:-3].to_parquet(f / "splits.parquet"), "incomplete"),
    (lambda f: (f / "bundle.json").write_text(json.dumps({**json.loads((f / "bundle.json").read_text()),
                                                          "format": 99})), "field 'format'"),
    (lambda f: (f / "bundle.json").write_text("{"), "bundle.json: not JSON"),
    (lambda f: pd.read_parquet(f / "splits.parquet").drop(columns="history").to_parquet(f / "splits.parquet"),
     "field 'history'"),
])
def test_damaged_bundle_names_the_file_or_field(bundle, damage, match):
    folder, _, _ = bundle
    damage(folder)
    with pytest.raises(GenrecDataError, match=match):
        read_bundle(folder)


def cli_train(folder, workdir, *extra):
    return main(["train", "--bundle", str(folder), "--workdir", str(workdir), "--model", "tiger", "--threads", "1",
                 "--model-settings", json.dumps(TINY_MODEL), "--train-settings", json.dumps(TINY_TRAIN),
                 "--eval-ks", "5", "10", "--eval-beam-width", "10", *extra])


def test_train_writes_the_metrics_the_library_computes_and_record_appends_them_once(bundle, tmp_path, capsys):
    folder, splits, sids = bundle
    workdir = tmp_path / "run"
    assert cli_train(folder, workdir, "--variant", "cli") == 0
    written = read_metrics(workdir / "metrics.csv")
    info = read_run_info(workdir)
    assert info["dataset"] == "toy" and info["experiment"]["variant"] == "cli" and info["bundle"]["rows"] == len(splits)
    direct = evaluate_experiment(workdir / "best.pt", splits, Catalog(n_items=N_ITEMS, sids=sids, codebook_sizes=SIZES),
                                 experiment(variant="cli")).metrics
    merged = written.merge(direct, on=["split", "metric", "k"], suffixes=("_cli", "_lib"))
    assert len(merged) == len(direct) == len(written)
    assert np.array_equal(merged["value_cli"].to_numpy(), merged["value_lib"].to_numpy())
    assert "ndcg@10" in capsys.readouterr().out

    store = tmp_path / "wh.duckdb"
    assert main(["record", "--workdir", str(workdir), "--warehouse", str(store)]) == 0
    with warehouse.connect(store, read_only=True) as con:
        rows = con.execute("SELECT * FROM metrics").df()
        views = set(con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").df()["view_name"])
    assert len(rows) == len(written) and set(rows["evaluation_id"]) == {info["evaluation_id"]}
    assert set(zip(rows["dataset"], rows["model"], rows["variant"], rows["tokenizer"], rows["profile"],
                   strict=True)) == {("toy", "tiger", "cli", "rq_kmeans", "smoke")}
    assert rows["mlflow_run_id"].isna().all() and {"leaderboard", "current_evaluations", "reproduction"} <= views
    assert set(rows["seed"]) == {0}
    with warehouse.connect(store, read_only=True) as con:
        run = con.execute("SELECT * FROM evaluation_runs").df()
        ranks = con.execute("SELECT * FROM evaluation_ranks ORDER BY user_index").df()
    assert run[["evaluation_id", "seed", "steps"]].values.tolist() == [[info["evaluation_id"], 0, info["steps"]]]
    test = splits[splits["split"] == "test"].sort_values("user_index")
    assert ranks["user_index"].tolist() == test["user_index"].tolist()
    assert ranks["target_item_index"].tolist() == test["target_item_index"].tolist()
    recall_10 = written.query("split == 'test' and metric == 'recall' and k == 10")["value"].iloc[0]
    assert ranks["rank"].between(1, 10).mean() == pytest.approx(recall_10)  # the ranks give back the metric

    assert main(["record", "--workdir", str(workdir), "--warehouse", str(store)]) == 2
    assert "already in" in capsys.readouterr().err
    with warehouse.connect(store, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == len(written)


def test_evaluate_only_ranks_the_stored_model_again_with_its_stored_settings(bundle, tmp_path):
    folder, _, _ = bundle
    workdir = tmp_path / "run"
    assert cli_train(folder, workdir) == 0
    first = read_metrics(workdir / "metrics.csv")
    stamp = (workdir / "best.pt").stat().st_mtime_ns
    assert main(["train", "--bundle", str(folder), "--workdir", str(workdir), "--evaluate-only",
                 "--threads", "1"]) == 0
    assert (workdir / "best.pt").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(read_metrics(workdir / "metrics.csv"), first)


def test_errors_name_what_is_wrong(tmp_path, capsys):
    assert main(["train", "--bundle", str(tmp_path / "nowhere"), "--workdir", str(tmp_path / "w")]) == 2
    assert "nowhere/bundle.json: bundle file missing" in capsys.readouterr().err
    assert main(["record", "--workdir", str(tmp_path), "--warehouse", str(tmp_path / "wh.duckdb")]) == 2
    assert "run.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--bundle", "b", "--workdir", "w", "--model-settings", "[1]"])
    assert "needs a JSON object" in capsys.readouterr().err
    assert main(["export", "--dataset", "toy", "--out", str(tmp_path / "b"),
                 "--warehouse", str(tmp_path / "missing.duckdb")]) == 2
    assert "no warehouse" in capsys.readouterr().err


def test_record_refuses_a_metrics_file_without_values(tmp_path, capsys):
    (tmp_path / "run.json").write_text(json.dumps({"evaluation_id": "e1", "dataset": "toy", "experiment": {}}))
    pd.DataFrame({"split": ["test"], "metric": ["ndcg"], "k": [10]}).to_csv(tmp_path / "metrics.csv", index=False)
    assert main(["record", "--workdir", str(tmp_path), "--warehouse", str(tmp_path / "wh.duckdb")]) == 2
    assert "metrics.csv, field 'value'" in capsys.readouterr().err
    assert not (tmp_path / "wh.duckdb").exists()


def test_train_runs_where_only_torch_numpy_pandas_and_transformers_exist(bundle, tmp_path):
    """The GPU machine has no Dagster, DuckDB or MLflow: train and evaluate must not import them, and
    a tracking URI in its environment only says where `record` will log the curves."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    folder, _, _ = bundle
    absent = ["duckdb", "dagster", "mlflow", "great_expectations", "sentence_transformers", "tabulate"]
    args = ["train", "--bundle", str(folder), "--workdir", str(tmp_path / "run"), "--threads", "1",
            "--model-settings", json.dumps(TINY_MODEL), "--train-settings", json.dumps(TINY_TRAIN),
            "--eval-ks", "5", "10", "--eval-beam-width", "10"]
    script = (f"import sys\nfor name in {absent!r}:\n    sys.modules[name] = None\n"
              f"from genrec_ml.cli import main\nsys.exit(main({args!r}))\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tracking off: mlflow is not installed here" in done.stdout
    assert (tmp_path / "run" / "metrics.csv").is_file() and "mlflow_run_id" not in read_run_info(tmp_path / "run")
    assert (tmp_path / "run" / "curves.jsonl").stat().st_size and not (tmp_path / "mlflow.db").exists()
