"""Runs that start from another run's weights (genrec_ml.derived) equal the same runs trained from scratch."""

import json

import pytest
import torch

from genrec_ml import warehouse
from genrec_ml.cli import main
from genrec_ml.derived import derive_experiment
from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.evaluation import evaluate_experiment
from genrec_ml.experiments import Experiment, read_run_info, train_experiment
from genrec_ml.inputs import write_bundle
from genrec_ml.model_specs import spec
from genrec_ml.reproduce import bundle_name, plan_runs, train_command
from genrec_ml.train.checkpoint import read_checkpoint
from tests.models.test_reg4rec import reg4rec_experiment, set_splits


def weights(path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model_state"]


def equal_weights(a, b) -> bool:
    a, b = weights(a), weights(b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def sampled(**model) -> Experiment:
    """The tiny REG4Rec, its PARS on sampled paths: on this toy they move the validated weights in 4 steps
    (beam paths keep the pre-trained ones), which the tests below tell apart."""
    return reg4rec_experiment(pars_paths="sample", **model)


def variant(experiment: Experiment, **model) -> Experiment:
    return Experiment(**{**experiment.__dict__, "model_overrides": {**experiment.model_overrides, **model}})


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """REG4Rec pre-trained, then 4 PARS steps (h = 3) on sampled paths; one thread, as the tests' runs
    (module fixtures come before the per-test thread setting, and another thread count sums in another
    order)."""
    splits, catalog = set_splits()
    workdir = tmp_path_factory.mktemp("source")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_experiment(sampled(), splits, catalog, workdir)
    finally:
        torch.set_num_threads(threads)
    return splits, catalog, workdir


def test_without_pars_is_the_source_pretrained_checkpoint_and_equals_training_it_alone(source, tmp_path):
    splits, catalog, workdir = source
    alone = variant(sampled(), pars_steps=0)
    trained = train_experiment(alone, splits, catalog, tmp_path / "alone")
    derived = derive_experiment(alone, splits, catalog, tmp_path / "derived", workdir, "pretrained")
    assert equal_weights(derived.checkpoint, trained.checkpoint)
    assert equal_weights(derived.checkpoint, workdir / "pretrained.pt")
    assert not equal_weights(derived.checkpoint, workdir / "best.pt")  # PARS moved the source's final weights
    info, source_info = read_run_info(tmp_path / "derived"), read_run_info(workdir)
    assert read_checkpoint(derived.checkpoint)["model_config"]["pars_steps"] == 0
    assert info["derived_from"]["stage"] == "pretrained" and info["derived_from"]["checkpoint"] == "pretrained.pt"
    assert info["steps"] == source_info["steps"] and info["best_valid"] == source_info["pretrain_best_valid"]
    assert info["train_seconds"] == pytest.approx(source_info["train_seconds"]
                                                  - source_info["post_training"]["seconds"])


def test_without_msra_post_trains_the_source_pretrained_weights_as_a_run_of_its_own_would(source, tmp_path):
    splits, catalog, workdir = source
    alone = variant(sampled(), msra_horizon=1)
    trained = train_experiment(alone, splits, catalog, tmp_path / "alone")
    derived = derive_experiment(alone, splits, catalog, tmp_path / "derived", workdir, "pretrained")
    assert equal_weights(derived.checkpoint, trained.checkpoint)  # PARS is a function of (seed, step) and weights
    assert derived.post_training.history == trained.post_training.history
    assert equal_weights(tmp_path / "derived" / "pretrained.pt", workdir / "pretrained.pt")
    assert not (tmp_path / "derived" / "training").exists()
    info = read_run_info(tmp_path / "derived")
    assert info["post_training"]["steps"] == 4 and info["pretrain_best_valid"] == read_run_info(workdir)[
        "pretrain_best_valid"]


def test_without_corp_decodes_the_source_final_weights_without_corp(source, tmp_path):
    splits, catalog, workdir = source
    derived = derive_experiment(variant(sampled(), corp=False), splits, catalog, tmp_path, workdir, "final")
    assert equal_weights(derived.checkpoint, workdir / "best.pt")
    assert read_checkpoint(derived.checkpoint)["model_config"]["corp"] is False
    key = ["split", "metric", "k"]
    with_corp = evaluate_experiment(workdir / "best.pt", splits, catalog).metrics.set_index(key).index
    without = evaluate_experiment(derived.checkpoint, splits, catalog).metrics.set_index(key).index
    assert ("test", "corp_pruned_share", -1) in with_corp and ("test", "corp_pruned_share", -1) not in without
    assert read_run_info(tmp_path)["train_seconds"] == read_run_info(workdir)["train_seconds"]


@pytest.mark.parametrize(("change", "stage", "field"), [
    ({"model_overrides": {"d_model": 32}}, "pretrained", "d_model"),  # pre-training reads it
    ({"seed": 1}, "pretrained", "seed"),
    ({"train_overrides": {"lr": 0.5}}, "pretrained", "train_overrides"),
    ({"model_overrides": {"corp": False}}, "pretrained", "corp"),  # validation under CORP chose the epoch
    ({"model_overrides": {"msra_horizon": 1}}, "final", "msra_horizon"),  # the final weights had h = 3
])
def test_a_run_whose_weights_would_differ_is_refused_naming_the_field(source, tmp_path, change, stage, field):
    splits, catalog, workdir = source
    base = sampled()
    if "model_overrides" in change:
        change = {"model_overrides": {**base.model_overrides, **change["model_overrides"]}}
    if "train_overrides" in change:
        change = {"train_overrides": {**base.train_overrides, **change["train_overrides"]}}
    with pytest.raises(GenrecConfigError, match=field):
        derive_experiment(Experiment(**{**base.__dict__, **change}), splits, catalog, tmp_path, workdir, stage)


def test_an_unfinished_source_is_an_error_naming_its_folder(source, tmp_path):
    splits, catalog, _ = source
    with pytest.raises(GenrecDataError, match="has not finished") as caught:
        derive_experiment(sampled(), splits, catalog, tmp_path / "new", tmp_path / "nothing", "pretrained")
    assert str(tmp_path / "nothing") in str(caught.value)


def test_reproduce_trains_a_source_first_and_starts_its_ablations_from_it(tmp_path, capsys):
    splits, catalog = set_splits()
    bundles = tmp_path / "bundles"
    write_bundle(bundles / bundle_name("toy", "mpq", None), splits, catalog, dataset="toy", tokenizer="mpq")
    base = sampled()
    models = {k: v for k, v in base.model_overrides.items() if k not in ("pars_steps",)}
    out = tmp_path / "runs"
    runs = plan_runs(bundles, ["reg4rec_wo_pars", "reg4rec_wo_corp"], [0], "smoke", out,
                     model_settings=models, train_settings=base.train_overrides)
    assert [r.spec.prefix for r in runs] == ["reg4rec", "reg4rec_wo_pars", "reg4rec_wo_corp"]  # the source added
    command = train_command(runs[2], 1)
    assert command[command.index("--start-from") + 1] == str(runs[0].workdir.resolve())
    assert command[command.index("--start-stage") + 1] == "final"
    assert main(["reproduce", "--bundles", str(bundles), "--models", "reg4rec_wo_pars,reg4rec_wo_corp", "--seeds",
                 "0", "--out", str(out), "--profile", "smoke", "--model-settings", json.dumps(models),
                 "--train-settings", json.dumps(base.train_overrides), "--threads", "1", "--parallel", "3",
                 "--device", "cpu"]) == 0
    folder = out / "toy"
    reg4rec = folder / "reg4rec" / "seed0"
    assert equal_weights(folder / "reg4rec_wo_pars" / "seed0" / "best.pt", reg4rec / "pretrained.pt")
    assert equal_weights(folder / "reg4rec_wo_corp" / "seed0" / "best.pt", reg4rec / "best.pt")
    for prefix in ("reg4rec_wo_pars", "reg4rec_wo_corp"):
        info = read_run_info(folder / prefix / "seed0")
        assert info["derived_from"]["workdir"] == str((folder / "reg4rec" / "seed0").resolve())
        assert (folder / prefix / "seed0" / "metrics.csv").is_file()
    assert spec("reg4rec_wo_msra").source == "reg4rec"
    def statuses():
        return [r.status for r in plan_runs(bundles, ["reg4rec_wo_pars", "reg4rec_wo_corp"], [0], "smoke", out,
                                            model_settings=models, train_settings=base.train_overrides, device="cpu")]

    assert statuses() == ["done"] * 3
    source_info = read_run_info(reg4rec)
    (reg4rec / "run.json").write_text(json.dumps({**source_info, "evaluation_id": "retrained"}))
    assert statuses() == ["done", "retrain", "retrain"]  # the source changed: what started from it is stale
    (reg4rec / "run.json").write_text(json.dumps(source_info))
    store = tmp_path / "wh.duckdb"
    assert main(["record", "--runs", str(out), "--warehouse", str(store)]) == 0
    with warehouse.connect(store, read_only=True) as con:
        recorded = con.execute("SELECT variant, count(*) FROM metrics GROUP BY ALL ORDER BY 1").fetchall()
        seconds = dict(con.execute("SELECT variant, train_seconds FROM evaluation_runs JOIN metrics USING "
                                   "(evaluation_id) GROUP BY ALL").fetchall())
    assert [variant for variant, _ in recorded] == ["default", "wo_corp", "wo_pars"]
    source_info = read_run_info(reg4rec)
    assert seconds["wo_corp"] == pytest.approx(source_info["train_seconds"])  # what obtaining it costs alone
