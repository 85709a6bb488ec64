"""`cli reproduce`: many runs from one command on bundles, where neither Dagster nor DuckDB exists; skipped
when done, recorded once; `--dry-run` finds every problem first; a failed run does not stop the others."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from genrec_ml import warehouse
from genrec_ml.cli import main
from genrec_ml.errors import GenrecConfigError
from genrec_ml.experiments import Catalog, read_run_info
from genrec_ml.inputs import bundle_cot, read_bundle, write_bundle
from genrec_ml.model_specs import MODEL_SPECS, spec
from genrec_ml.models.registry import MODELS
from genrec_ml.progress import ProgressFile, overall_seconds, read_progress, remaining_seconds
from genrec_ml.reproduce import _stop_on_sigterm, bundle_name, needed_bundles, needed_codes, scoped_settings
from tests.test_cli import catalog_with_clusters
from tests.test_experiments import N_ITEMS, TINY_MODEL, TINY_TRAIN, splits_table

ROOT = Path(__file__).resolve().parents[1]
ABSENT = ["dagster", "duckdb", "mlflow", "great_expectations", "sentence_transformers", "tabulate"]
ITEM_MODEL = dict(d_model=16, n_heads=2, d_ff=32, n_layers=1, dropout=0.0)
MODEL_SETTINGS = {"tiger": TINY_MODEL, "s2gr": TINY_MODEL, "sasrec": ITEM_MODEL}
TRAIN_SETTINGS = {**TINY_TRAIN, "max_steps": 3, "eval_max_examples": 16, "checkpoint_every_steps": 2}


@pytest.fixture
def bundles(tmp_path) -> Path:
    """The bundles tiger (rq_vae), s2gr (coba_rqvae with coarse clusters) and sasrec (item ids) train on."""
    splits, sids = splits_table()
    folder = tmp_path / "bundles"
    catalog = catalog_with_clusters(sids)
    write_bundle(folder / bundle_name("toy", "rq_vae", None), splits, catalog, dataset="toy", tokenizer="rq_vae")
    quantised = replace(catalog, coarse_centroids=catalog.coarse_centroids[:-1],  # S²GR: none for the last level
                        coarse_assignments=catalog.coarse_assignments[:-1])
    write_bundle(folder / bundle_name("toy", "coba_rqvae", None), splits, quantised, dataset="toy",
                 tokenizer="coba_rqvae")
    write_bundle(folder / bundle_name("toy", None, None), splits, Catalog(n_items=N_ITEMS), dataset="toy",
                 tokenizer=None)
    return folder


def reproduce_args(bundles: Path, out: Path, models: str = "tiger,sasrec", seeds: str = "0,1",
                   train_settings: dict | None = None, dry_run: bool = False) -> list[str]:
    return ["reproduce", "--bundles", str(bundles), "--models", models, "--seeds", seeds, "--out", str(out),
            "--model-settings", json.dumps(MODEL_SETTINGS), "--train-settings",
            json.dumps(train_settings or TRAIN_SETTINGS), "--threads", "1", "--parallel", "2", "--device", "cpu",
            *(["--dry-run"] if dry_run else [])]


def without_gpu_machine_packages(tmp_path: Path) -> dict[str, str]:
    """An environment whose every Python process (the children too) sees the GPU machine's packages only,
    the way tests/test_cli.py blocks them in one process: sys.modules[name] = None, set by sitecustomize."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import sys\nfor name in {ABSENT!r}:\n    sys.modules[name] = None\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}


def test_reproduce_trains_every_run_without_dagster_then_skips_them_and_records_each_once(bundles, tmp_path,
                                                                                         capsys):
    out = tmp_path / "runs"
    env = without_gpu_machine_packages(tmp_path)
    blocked = subprocess.run([sys.executable, "-c", "import duckdb"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "duckdb" in blocked.stderr
    started = time.perf_counter()
    dry, real = reproduce_args(bundles, out, dry_run=True), reproduce_args(bundles, out)
    script = f"import sys\nfrom genrec_ml.cli import main\nassert main({dry!r}) == 0\nsys.exit(main({real!r}))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all checks passed" in done.stdout  # the dry run too needs none of the absent packages
    print(f"reproduce of 4 runs: {time.perf_counter() - started:.0f} s")
    workdirs = {(m, seed): out / "toy" / m / f"seed{seed}" for m in ("tiger", "sasrec") for seed in (0, 1)}
    for (prefix, seed), workdir in workdirs.items():
        info = read_run_info(workdir)
        assert (workdir / "metrics.csv").is_file() and (workdir / "train.log").is_file()
        assert info["experiment"]["seed"] == seed and info["experiment"]["variant"] == "default"
        assert info["experiment"]["model"] == prefix and info["steps"] == 3
        progress = read_progress(workdir / "progress.json")
        assert progress["state"] == "done" and progress["step"] == progress["total_steps"] == 3
        assert progress["best"]["ndcg@10"] == pytest.approx(info["best_valid"]["ndcg@10"])
    assert "test figures" in done.stdout and "mean ± std over seeds" in done.stdout
    assert f"python -m genrec_ml.cli record --runs {out}" in done.stdout

    stamps = {key: (workdir / "metrics.csv").stat().st_mtime_ns for key, workdir in workdirs.items()}
    assert main(reproduce_args(bundles, out)) == 0
    assert "skipping 4 runs already done" in capsys.readouterr().out
    assert stamps == {key: (workdir / "metrics.csv").stat().st_mtime_ns for key, workdir in workdirs.items()}
    assert main(reproduce_args(bundles, out, train_settings={**TRAIN_SETTINGS, "lr": 0.02}, dry_run=True)) == 0
    assert "4 runs (4 retrain)" in capsys.readouterr().out  # other settings: trained again, not skipped

    store = tmp_path / "wh.duckdb"
    assert main(["record", "--runs", str(out), "--warehouse", str(store)]) == 0
    assert "recorded 4 evaluations" in capsys.readouterr().out
    rows = sum(len(pd.read_csv(workdir / "metrics.csv")) for workdir in workdirs.values())
    with warehouse.connect(store, read_only=True) as con:
        recorded = con.execute("SELECT evaluation_id, count(*) AS n FROM metrics GROUP BY ALL").df()
    assert set(recorded["evaluation_id"]) == {read_run_info(w)["evaluation_id"] for w in workdirs.values()}
    assert recorded["n"].sum() == rows
    assert main(["record", "--runs", str(out), "--warehouse", str(store)]) == 0
    assert "recorded 0 evaluations" in capsys.readouterr().out
    with warehouse.connect(store, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == rows


def test_a_failed_run_does_not_stop_the_others_and_the_exit_code_says_so(bundles, tmp_path, capsys):
    out = tmp_path / "runs"
    settings = {**TRAIN_SETTINGS, "sasrec": {"max_steps": 0}}  # valid JSON, impossible for sasrec alone
    assert main(reproduce_args(bundles, out, seeds="0", train_settings=settings)) == 1
    captured = capsys.readouterr()
    assert (out / "toy" / "tiger" / "seed0" / "metrics.csv").is_file()
    failed = out / "toy" / "sasrec" / "seed0"
    assert not (failed / "metrics.csv").exists() and read_progress(failed / "progress.json")["state"] == "failed"
    assert "failed: toy/sasrec/seed0 (exit 2)" in captured.err and str(failed / "train.log") in captured.err
    assert "max_steps" in captured.err  # the log's last line: what to fix


def test_dry_run_checks_bundles_models_and_disk_and_trains_nothing(bundles, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(reproduce_args(bundles, out, "tiger,s2gr,sasrec", "0,1,2", dry_run=True)) == 0
    printed = capsys.readouterr().out
    assert "9 runs (9 train)" in printed and "all checks passed" in printed and "writable" in printed
    for name in ("toy/tiger/seed2", "toy/s2gr/seed0", "toy/sasrec/seed1", "toy-coba_rqvae", "toy-items"):
        assert name in printed
    assert not list(out.rglob("*.pt")) and not list(out.rglob("progress.json"))


def test_dry_run_names_the_missing_export_the_unknown_model_and_every_bad_setting(bundles, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(reproduce_args(bundles, out, "tiger,care_letter,s2gr_c8", "0", dry_run=True)) == 2
    err = capsys.readouterr().err
    assert f"python -m genrec_ml.cli export --dataset toy --tokenizer letter --out {bundles / 'toy-letter'}" in err
    assert f"--tokenizer coba_rqvae --n-coarse 8 --out {bundles / 'toy-coba_rqvae-c8'}" in err
    assert "export-bundles --dataset toy --models tiger,care_letter,s2gr_c8" in err

    assert main(reproduce_args(bundles, out, "tiger,gpt9", "0", dry_run=True)) == 2
    assert "unknown model 'gpt9'; known: tiger, s2gr, care," in capsys.readouterr().err

    bad = {**TRAIN_SETTINGS, "sasrec": {"max_steps": 0}, "tiger": {"bogus": 1}}
    assert main(reproduce_args(bundles, out, "tiger,sasrec", "0", bad, dry_run=True)) == 2
    printed = capsys.readouterr().out
    assert "2 problems; nothing was trained" in printed and "'bogus'" in printed and "'max_steps'" in printed
    assert not list(out.rglob("*.pt"))


def test_export_bundles_writes_one_bundle_per_catalog_the_models_need(tmp_path, capsys):
    splits, sids = splits_table()
    store = tmp_path / "wh.duckdb"
    sid_rows = pd.DataFrame([(item, level, int(code)) for item, codes in enumerate(sids)
                             for level, code in enumerate(codes)], columns=["item_index", "level", "code"])
    with warehouse.connect(store) as con:
        warehouse.replace_partition(con, "items", "toy", pd.DataFrame({"item_index": range(N_ITEMS)}))
        warehouse.replace_partition(con, "splits", "toy", splits)
        warehouse.replace_partition(con, "item_semantic_ids", "toy", sid_rows, keys={"tokenizer": "rq_vae"})
        warehouse.replace_partition(con, "codebook_utilization", "toy",
                                    pd.DataFrame({"level": [0, 1, 2], "codebook_size": [4, 4, 4]}),
                                    keys={"tokenizer": "rq_vae"})
    args = ["export-bundles", "--dataset", "toy", "--models", "tiger,care,sasrec,bert4rec", "--out",
            str(tmp_path / "bundles"), "--warehouse", str(store), "--artifacts", str(tmp_path / "artifacts")]
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == ["toy-items", "toy-rq_vae"]
    assert read_bundle(tmp_path / "bundles" / "toy-rq_vae").catalog.sids.tolist() == sids.tolist()
    assert read_bundle(tmp_path / "bundles" / "toy-items").meta["tokenizer"] is None
    assert main([*args[:4], "tiger,s2gr", *args[5:]]) == 2  # no coba_rqvae codes in this warehouse
    assert "coba_rqvae" in capsys.readouterr().err


def test_only_the_bundles_of_cot_models_carry_the_teacher_cots(tmp_path):
    splits, sids = splits_table()
    train = splits[splits["split"] == "train"]
    cot = pd.DataFrame({"scheme": "loo", "user_index": train["user_index"].to_numpy(),
                        "target_position": train["target_position"].to_numpy(),
                        "segments": [["Evidence: a step.", "Intent: next."]] * len(train)})
    store = tmp_path / "wh.duckdb"
    with warehouse.connect(store) as con:
        warehouse.replace_partition(con, "items", "toy", pd.DataFrame({"item_index": range(N_ITEMS)}))
        warehouse.replace_partition(con, "splits", "toy", splits)
        warehouse.replace_partition(con, "cot_texts", "toy", cot)
        for tokenizer in ("rq_vae", "rq_kmeans_4x256"):
            sid_rows = pd.DataFrame([(item, level, int(code)) for item, codes in enumerate(sids)
                                     for level, code in enumerate(codes)], columns=["item_index", "level", "code"])
            warehouse.replace_partition(con, "item_semantic_ids", "toy", sid_rows, keys={"tokenizer": tokenizer})
            warehouse.replace_partition(con, "codebook_utilization", "toy",
                                        pd.DataFrame({"level": [0, 1, 2], "codebook_size": [4, 4, 4]}),
                                        keys={"tokenizer": tokenizer})
    where = ["--warehouse", str(store), "--artifacts", str(tmp_path / "artifacts")]
    bundles = tmp_path / "bundles"
    assert needed_bundles(["tiger", "sasrec", "explicit_cot_gen"]) == {
        ("rq_vae", None): False, (None, None): False, ("rq_kmeans_4x256", None): True}  # its source reads them
    assert main(["export-bundles", "--dataset", "toy", "--models", "tiger,sasrec,minionerec,lasar", "--out",
                 str(bundles), *where]) == 0
    rows = {p.name: read_bundle(p).meta["cot_rows"] for p in bundles.iterdir()}
    assert rows == {"toy-rq_vae": 0, "toy-items": 0, "toy-rq_kmeans_4x256": len(train)}
    assert bundle_cot(read_bundle(bundles / "toy-rq_kmeans_4x256"), "explicit_cot", None)["segments"].tolist() == (
        cot["segments"].tolist())
    single = ["export", "--dataset", "toy", "--tokenizer", "rq_kmeans_4x256", *where]
    assert main([*single, "--out", str(tmp_path / "with")]) == 0  # `export` keeps them unless told
    assert main([*single, "--no-cot", "--out", str(tmp_path / "without")]) == 0
    assert read_bundle(tmp_path / "with").meta["cot_rows"] == len(train)
    assert read_bundle(tmp_path / "without").cot_texts is None


def test_model_specs_name_every_variant_once_with_registered_models():
    assert len({s.prefix for s in MODEL_SPECS}) == len(MODEL_SPECS) and {s.model for s in MODEL_SPECS} <= set(MODELS)
    assert spec("s2gr_c8").codes == ("coba_rqvae", 8) and spec("sasrec_bce").model_settings == {"loss": "bce"}
    assert spec("care_letter").experiment(profile="paper", seed=2).tokenizer == "letter"
    with pytest.raises(GenrecConfigError, match="known: tiger, s2gr"):
        spec("tigre")
    assert needed_codes(["tiger", "care", "s2gr", "s2gr_c8", "sasrec", "gru4rec"]) == [
        ("rq_vae", None), ("coba_rqvae", None), ("coba_rqvae", 8), (None, None)]
    assert bundle_name("beauty", "coba_rqvae", 8) == "beauty-coba_rqvae-c8"
    assert bundle_name("beauty", None, None, "ratio") == "beauty-items-ratio"


def test_settings_scoped_to_a_model_or_prefix_override_the_common_ones():
    settings = {"dropout": 0.1, "rearec": {"d_model": 8}, "rearec_prl": {"dropout": 0.3}}
    assert scoped_settings(settings, spec("rearec_prl")) == {"dropout": 0.3, "d_model": 8}
    assert scoped_settings(settings, spec("rearec_erl")) == {"dropout": 0.1, "d_model": 8}
    assert scoped_settings(settings, spec("tiger")) == {"dropout": 0.1}
    with pytest.raises(GenrecConfigError, match="sasrec"):
        scoped_settings({"sasrec": 3}, spec("tiger"))


def test_progress_file_writes_validations_at_once_and_steps_at_most_every_few_seconds(tmp_path):
    path = tmp_path / "w" / "progress.json"
    progress = ProgressFile(path, total_steps=100, steps_per_epoch=10, min_seconds=60)
    assert read_progress(path)["state"] == "training"
    progress("step", {"step": 10, "loss": 1.0})
    progress("step", {"step": 20, "loss": 1.0})
    assert read_progress(path)["step"] == 0  # within min_seconds: no write
    progress("eval", {"step": 20, "epoch": 2, "ndcg@10": 0.2, "recall@10": 0.4})
    progress("eval", {"step": 30, "epoch": 3, "ndcg@10": 0.1, "recall@10": 0.5})
    state = read_progress(path)
    assert state["step"] == 30 and state["epoch"] == 3 and state["last_eval"]["ndcg@10"] == 0.1
    assert state["best"]["ndcg@10"] == 0.2 and state["steps_per_second"] > 0
    progress.evaluating()
    assert read_progress(path)["state"] == "evaluating"


def test_planned_steps_count_one_ranks_share_under_torchrun(tmp_path, monkeypatch):
    from genrec_ml.progress import training_progress
    from genrec_ml.train.config import TrainConfig, planned_steps

    config = TrainConfig(batch_size=10, max_epochs=2)
    assert planned_steps(config, 95) == 20 and planned_steps(config, 95, world_size=2) == 10  # 10 batches / 2
    assert planned_steps(TrainConfig(batch_size=10, max_epochs=2, max_steps=7), 95, world_size=2) == 7
    splits, _ = splits_table()
    experiment = spec("tiger").experiment(train_settings={"batch_size": 10, "max_epochs": 2})
    monkeypatch.setenv("WORLD_SIZE", "2")
    halved = read_progress(training_progress(tmp_path / "a", experiment, splits).path)["total_steps"]
    monkeypatch.setenv("WORLD_SIZE", "1")
    whole = read_progress(training_progress(tmp_path / "b", experiment, splits).path)["total_steps"]
    assert whole == 2 * halved


def test_eta_from_the_step_rate_and_queued_runs_fill_the_first_free_slot():
    assert remaining_seconds({"step": 50, "total_steps": 150, "steps_per_second": 2.0, "updated_at": 100.0},
                             now=110.0) == 40.0
    assert remaining_seconds({"step": 5, "total_steps": None, "steps_per_second": 2.0}) is None
    assert overall_seconds([10.0, 30.0], [20.0, 5.0], slots=2) == 35.0  # 10 + 20 and 30 + 5
    assert overall_seconds([10.0], [None], slots=2) is None


def test_sigterm_stops_the_runs_once_though_timeout_sends_it_twice():
    previous = signal.getsignal(signal.SIGTERM)
    restore = _stop_on_sigterm()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        os.kill(os.getpid(), signal.SIGTERM)  # `timeout` signals its command, then the whole process group
        time.sleep(0.2)  # while the runs are being stopped: ignored, nothing raised
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is previous
