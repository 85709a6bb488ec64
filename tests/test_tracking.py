"""Every `cli train` run tracked: curves.jsonl in the workdir always, the MLflow run live where MLflow
is (a killed run resumes into the same run), or created by `record` from the workdir where it was not."""

import json

import pytest

from genrec_ml import cli, warehouse
from genrec_ml.cli import main, read_metrics
from genrec_ml.experiments import read_run_info
from genrec_ml.inputs import write_bundle
from genrec_ml.tracking import CURVES_FILE, CurveLogger, CurvesFile, read_curves
from tests.test_cli import catalog_with_clusters, cli_train
from tests.test_experiments import Killed, splits_table

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def bundle_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    splits, sids = splits_table()
    return write_bundle(tmp_path / "bundle", splits, catalog_with_clusters(sids), dataset="toy", tokenizer="rq_kmeans")


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def the_run(uri: str):
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("training").experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def assert_run_holds_the_curves(client, run, workdir):
    """Every point of curves.jsonl, once, at its step and with its value, as the MLflow metric history."""
    points = read_curves(workdir / CURVES_FILE).points
    by_name = {}
    for point in points:
        for name, value in point.metrics.items():
            by_name.setdefault(name, []).append((point.step, value))
    assert {"loss", "lr", "valid_ndcg_at_10", "valid_train_loss"} <= set(by_name)
    for name, expected in by_name.items():
        history = client.get_metric_history(run.info.run_id, name)
        assert sorted((m.step, m.value) for m in history) == sorted(expected), name
    return by_name


def assert_finished_run_of_the_workdir(client, run, workdir, logged_by):
    info, metrics = read_run_info(workdir), read_metrics(workdir / "metrics.csv")
    assert run.info.status == "FINISHED" and run.data.tags["logged_by"] == logged_by
    assert run.data.tags["model"] == "tiger" and run.data.tags["dataset"] == "toy"
    assert run.data.tags["evaluation_id"] == info["evaluation_id"]
    assert run.data.params["experiment.tokenizer"] == "rq_kmeans" and run.data.params["train.batch_size"] == "32"
    assert json.loads(run.data.params["experiment.eval_ks"]) == [5, 10]
    test_ndcg = metrics.query("split == 'test' and metric == 'ndcg' and k == 10")["value"].iloc[0]
    assert run.data.metrics["final_test_ndcg_at_10"] == test_ndcg and run.data.metrics["steps"] == info["steps"]
    assert {f.path for f in client.list_artifacts(run.info.run_id)} == {"best.pt", CURVES_FILE}


def recorded_run_ids(store_path) -> set:
    with warehouse.connect(store_path, read_only=True) as con:
        return set(con.execute("SELECT mlflow_run_id FROM metrics").df()["mlflow_run_id"])


def test_curve_logger_averages_losses_over_its_interval_and_names_metrics_for_mlflow():
    points = []
    logger = CurveLogger(lambda kind, step, metrics: points.append((kind, step, metrics)), every=2)
    logger("step", {"step": 1, "loss": 1.0, "loss_ce": 0.5, "lr": 0.1})
    logger("step", {"step": 2, "loss": 3.0, "loss_ce": 1.5, "lr": 0.2})
    logger("checkpoint", {"step": 2, "path": "last.pt", "kind": "last"})
    logger("eval", {"step": 2, "epoch": 1, "train_loss": 2.0, "ndcg@10": 0.25})
    logger("pars_step", {"step": 1, "loss": 0.5, "reward_total": 0.75})
    logger("pars_eval", {"step": 1, "ndcg@10": 0.3})
    logger("rl_step", {"step": 1, "loss": 0.25, "reward": 0.5})  # LASAR's RL phase
    logger("rl_eval", {"step": 1, "ndcg@10": 0.35})
    assert points == [("train", 2, {"loss": 2.0, "loss_ce": 1.0, "lr": 0.2}),
                      ("valid", 2, {"valid_train_loss": 2.0, "valid_ndcg_at_10": 0.25}),
                      ("pars", 1, {"pars_loss": 0.5, "pars_reward_total": 0.75}),
                      ("pars_valid", 1, {"pars_valid_ndcg_at_10": 0.3}),
                      ("rl", 1, {"rl_loss": 0.25, "rl_reward": 0.5}),
                      ("rl_valid", 1, {"rl_valid_ndcg_at_10": 0.35})]


def test_curves_file_continues_a_resumed_run_and_starts_other_runs_afresh(tmp_path):
    path, identity = tmp_path / CURVES_FILE, {"experiment": {"seed": 0}}
    first = CurvesFile(path, identity, resume=False)
    first.start("run-1")
    for step in (1, 2, 3):
        first.append("train", step, {"loss": float(step)})
    with path.open("a") as out:
        out.write('{"kind": "train", "st')  # a line cut short by the kill
    resumed = CurvesFile(path, identity, resume=True)
    assert resumed.mlflow_run_id == "run-1" and resumed.keys == {("train", 1), ("train", 2), ("train", 3)}
    resumed.start("run-1")
    logger = CurveLogger(resumed.append, skip=resumed.keys)
    for step in (2, 3, 4):  # the loop resumes from its checkpoint at step 1
        logger("step", {"step": step, "loss": 10.0 * step, "lr": 0.1})
    resumed.append("train", 4, {"loss": 5.0})  # written twice anyway: readers keep the last
    curves = read_curves(path)
    assert [(p.step, p.metrics["loss"]) for p in curves.points] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 5.0)]
    assert [r["mlflow_run_id"] for r in curves.runs] == ["run-1", "run-1"]
    assert CurvesFile(path, {"experiment": {"seed": 1}}, resume=True).keys == set()  # other settings
    assert read_curves(path).points == [] and CurvesFile(path, identity, resume=False).mlflow_run_id is None


def test_train_with_tracking_logs_the_run_live_through_a_kill_and_record_keeps_its_id(bundle_folder, tmp_path, store,
                                                                                     monkeypatch):
    workdir = tmp_path / "run"
    real_train = cli.train_experiment

    def killed_at_step_7(*args, callback, **kwargs):
        def crash(event, payload):
            callback(event, payload)
            if event == "step" and payload["step"] == 7:
                raise Killed
        return real_train(*args, callback=crash, **kwargs)

    monkeypatch.setattr(cli, "train_experiment", killed_at_step_7)
    with pytest.raises(Killed):
        cli_train(bundle_folder, workdir, "--tracking-uri", store)
    client, run = the_run(store)
    assert run.info.status == "FAILED" and (workdir / "training" / "last.pt").is_file()
    monkeypatch.setattr(cli, "train_experiment", real_train)
    assert cli_train(bundle_folder, workdir, "--tracking-uri", store) == 0

    client, run = the_run(store)  # the resumed process logged into the same run
    info = read_run_info(workdir)
    assert info["mlflow_run_id"] == run.info.run_id
    assert_finished_run_of_the_workdir(client, run, workdir, "cli train")
    curves = assert_run_holds_the_curves(client, run, workdir)
    assert [step for step, _ in curves["loss"]] == list(range(1, info["steps"] + 1))
    lines = [json.loads(line) for line in (workdir / CURVES_FILE).read_text().splitlines()]
    assert len([line for line in lines if line["kind"] == "train"]) == info["steps"]  # no step written twice
    assert len(curves["valid_ndcg_at_10"]) == 2  # one validation per epoch
    assert (tmp_path / "mlflow-artifacts").is_dir()  # beside the sqlite store, as the Dagster resources keep it

    wh = tmp_path / "wh.duckdb"
    assert main(["record", "--workdir", str(workdir), "--warehouse", str(wh), "--tracking-uri", store]) == 0
    assert recorded_run_ids(wh) == {run.info.run_id}
    assert the_run(store)[1].info.run_id == run.info.run_id  # record created no second run


def test_record_creates_the_run_of_a_workdir_trained_without_mlflow_from_its_curves(bundle_folder, tmp_path, store,
                                                                                   capsys):
    workdir = tmp_path / "runs" / "toy" / "tiger" / "seed0"
    assert cli_train(bundle_folder, workdir) == 0
    assert "mlflow_run_id" not in read_run_info(workdir) and "tracking" not in capsys.readouterr().out
    written = (workdir / CURVES_FILE).read_text()

    wh = tmp_path / "wh.duckdb"
    assert main(["record", "--runs", str(tmp_path / "runs"), "--warehouse", str(wh), "--tracking-uri", store]) == 0
    client, run = the_run(store)
    assert read_run_info(workdir)["mlflow_run_id"] == run.info.run_id and recorded_run_ids(wh) == {run.info.run_id}
    assert_finished_run_of_the_workdir(client, run, workdir, "cli record")
    assert_run_holds_the_curves(client, run, workdir)
    stamps = {p.step: p.time for p in read_curves(workdir / CURVES_FILE).points if p.kind == "train"}
    assert {m.step: m.timestamp for m in client.get_metric_history(run.info.run_id, "loss")} == stamps
    assert (workdir / CURVES_FILE).read_text() == written  # record reads the curves, never rewrites them
    assert run.info.start_time == min(json.loads(line)["time"] for line in written.splitlines())
