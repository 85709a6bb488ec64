"""TIGER and the popularity floor trained and evaluated as assets on the tiny `synthetic` partition."""

import shutil
from pathlib import Path

import mlflow
import pytest

from genrec_assets.defs.jobs import nightly_datasets, nightly_retraining
from genrec_ml import warehouse
from genrec_ml.experiments import read_run_info
from tests.assets.pipeline import TINY_CODEBOOK, materialize, shared_instance, tiny_training

pytestmark = pytest.mark.slow
SELECTION = ["rq_kmeans_codebook", "popularity_metrics", "tiger_checkpoint", "tiger_metrics"]


@pytest.fixture(scope="module")
def trained_warehouse(synthetic_warehouse, tmp_path_factory):
    source, _ = synthetic_warehouse
    path = tmp_path_factory.mktemp("models") / "warehouse.duckdb"
    shutil.copy(source, path)
    run_config = {"ops": {"rq_kmeans_codebook": {"config": TINY_CODEBOOK}, **tiny_training("tiger")}}
    result = materialize(path, run_config=run_config, selection=SELECTION, raise_on_error=False)
    return path, result, run_config


def check_results(result) -> dict:
    return {e.asset_check_evaluation_data.check_name + ":" + e.asset_check_evaluation_data.asset_key.path[-1]:
            e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def test_training_and_evaluation_fill_metrics_with_linked_runs(trained_warehouse):
    path, result, _ = trained_warehouse
    materialized = {e.asset_key.path[-1] for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert set(SELECTION) <= materialized
    with warehouse.connect(path, read_only=True) as con:
        rows = con.execute("SELECT model, tokenizer, profile, split, metric, k, mlflow_run_id, dagster_run_id "
                           "FROM metrics WHERE dataset = 'synthetic'").df()
    tiger = rows[rows["model"] == "tiger"]
    assert set(tiger["split"]) == {"valid", "test"} and set(tiger["tokenizer"]) == {"rq_kmeans"}
    assert {(m, k) for m, k in zip(tiger["metric"], tiger["k"], strict=True)} >= {
        ("recall", 5), ("recall", 10), ("recall", 20), ("ndcg", 5), ("ndcg", 10), ("ndcg", 20), ("mrr", -1),
        ("divr", 10), ("orr", 10)}
    assert set(rows[rows["model"] == "popularity"]["mlflow_run_id"].isna()) == {True}
    run_id = tiger["mlflow_run_id"].iloc[0]
    info = read_run_info(path.parent / "artifacts" / "synthetic" / "models" / "tiger")
    assert info["mlflow_run_id"] == run_id and tiger["dagster_run_id"].iloc[0] == result.run_id
    mlflow.set_tracking_uri(f"sqlite:///{path.parent / 'mlflow.db'}")
    run = mlflow.get_run(run_id)
    assert run.data.tags["model"] == "tiger" and "final_test_ndcg_at_10" in run.data.metrics
    assert "valid_ndcg_at_10" in run.data.metrics and run.data.params["experiment.tokenizer"] == "rq_kmeans"


def test_popularity_check_agrees_with_the_warehouse(trained_warehouse):
    path, result, _ = trained_warehouse
    check = check_results(result)["beats_popularity:tiger_metrics"]
    with warehouse.connect(path, read_only=True) as con:
        model, floor = con.execute(
            "SELECT max(value) FILTER (WHERE model = 'tiger'), max(value) FILTER (WHERE model = 'popularity') "
            "FROM metrics WHERE split = 'valid' AND metric = 'ndcg' AND k = 10 AND scheme = 'loo'").fetchone()
        on_board = con.execute("SELECT count(*) FROM leaderboard WHERE model = 'tiger'").fetchone()[0]
    assert check.passed == (model > floor) == (on_board == 1)
    assert result.success == check.passed  # the check blocks: a losing model fails the run


def test_nightly_schedule_requests_one_run_per_configured_dataset(monkeypatch):
    import dagster as dg

    night = __import__("datetime").datetime(2026, 11, 23, 2)
    instance = shared_instance()  # a schedule context needs an instance with a ref
    missing = [key for key in ("synthetic", "amazon-beauty") if not instance.has_dynamic_partition("datasets", key)]
    instance.add_dynamic_partitions("datasets", missing)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=night)
    assert {"synthetic", "amazon-beauty"} <= {r.partition_key for r in nightly_retraining(context)}
    monkeypatch.setenv("GENREC_NIGHTLY_DATASETS", "synthetic")
    requests = nightly_retraining(context)
    assert [(r.partition_key, r.run_key) for r in requests] == [("synthetic", "synthetic-2026-11-23")]
    monkeypatch.setenv("GENREC_NIGHTLY_DATASETS", "synthetic,nope")
    with pytest.raises(ValueError, match="nope"):
        nightly_datasets(instance)


@pytest.fixture(scope="module")
def more_models(trained_warehouse, tmp_path_factory):
    source, _, _ = trained_warehouse
    path = tmp_path_factory.mktemp("more_models") / "warehouse.duckdb"
    shutil.copy(source, path)
    shutil.copytree(source.parent / "artifacts", path.parent / "artifacts")
    item_settings = {"d_model": 16, "n_heads": 2, "d_ff": 32}
    care = tiny_training("care")
    care["care_checkpoint"]["config"]["seeds"] = [0, 1]  # two seeds: two runs, two evaluations
    sid_models = {**tiny_training("s2gr"), **tiny_training("s2gr_c4"), **care}
    run_config = {"ops": {**tiny_training("sasrec", tokenizer="", model_settings=item_settings), **sid_models}}
    selection = [f"{prefix}_{kind}" for prefix in ("sasrec", "s2gr", "s2gr_c4", "care")
                 for kind in ("checkpoint", "metrics")]
    result = materialize(path, run_config=run_config, selection=selection, raise_on_error=False)
    # on its own: in the models' run a model below the popularity floor (tiny models often are) blocks it
    refreshed = materialize(path, run_config={"ops": {"reproduction": {"config": {"n_boot": 200}}}},
                            selection=["reproduction"])
    return path, result, refreshed


def test_a_baseline_and_s2gr_land_in_metrics_beside_tiger(more_models):
    path, result, _ = more_models
    with warehouse.connect(path, read_only=True) as con:
        found = con.execute("SELECT model, any_value(tokenizer), count(DISTINCT evaluation_id) FROM metrics "
                            "WHERE dataset = 'synthetic' AND model <> 'popularity' GROUP BY model").fetchall()
    assert sorted(found) == [("care", "rq_kmeans", 2), ("s2gr", "rq_kmeans", 2), ("sasrec", None, 1),
                             ("tiger", "rq_kmeans", 1)]
    with warehouse.connect(path, read_only=True) as con:
        variants = {r[0] for r in con.execute("SELECT DISTINCT variant FROM metrics WHERE model = 's2gr'").fetchall()}
    assert variants == {"default", "c4"}
    metadata = {e.asset_key.path[-1]: e.event_specific_data.materialization.metadata for e in result.all_events
                if e.event_type_value == "ASSET_MATERIALIZATION"}
    agreement = metadata["s2gr_metrics"]["thinking_agreement"].value
    assert "agreement" in agreement and "chance" in agreement  # thinking tokens vs true clusters, per level
    assert "0.25" in metadata["s2gr_c4_metrics"]["thinking_agreement"].value  # chance 1/C with C = 4
    assert "thinking_clusters" in metadata["s2gr_metrics"] and "token_bias" not in metadata["sasrec_metrics"]


def test_seeds_are_separate_evaluations_and_reproduction_tests_methods_against_tiger(more_models):
    path, result, refreshed = more_models
    with warehouse.connect(path, read_only=True) as con:
        seeds = con.execute("SELECT DISTINCT seed FROM metrics WHERE model = 'care' ORDER BY seed").df()
        current = con.execute("SELECT model, count(*) AS n FROM current_evaluations GROUP BY model").df()
        summary = con.execute("SELECT model, n_seeds FROM seed_summary WHERE split = 'test' AND metric = 'ndcg' "
                              "AND k = 10").df()
        ranks = con.execute("SELECT count(DISTINCT evaluation_id) AS n FROM evaluation_ranks").fetchone()[0]
        significance = con.execute("SELECT model, baseline_model, metric, seeds FROM significance "
                                   "WHERE dataset = 'synthetic'").df()
        published = con.execute("SELECT count(*) FROM published_results").fetchone()[0]
    assert seeds["seed"].tolist() == [0, 1]
    assert ranks == 6  # tiger, sasrec, s2gr, s2gr_c4 and care's two seeds, one ranked test set each
    # only evaluations above the popularity floor are current; the summary and the tests use those
    current = dict(zip(current["model"], current["n"], strict=True))
    care_seeds = summary[summary["model"] == "care"]["n_seeds"].tolist()
    assert care_seeds == ([current["care"]] if "care" in current else [])
    tested = {m for m in ("care", "s2gr") if m in current} if "tiger" in current else set()
    assert set(significance["model"]) == tested and set(significance["baseline_model"]) <= {"tiger"}
    assert published > 100
    metadata = {e.asset_key.path[-1]: e.event_specific_data.materialization.metadata
                for run in (result, refreshed) for e in run.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert "compared_rows" in metadata["reproduction"] and metadata["care_metrics"]["test_ndcg_10_per_seed"]


def test_every_reasoning_variant_and_baseline_materializes_on_tiny_synthetic(trained_warehouse, tmp_path):
    from genrec_ml.model_specs import BASELINES, CARE_ABLATIONS, LASAR, REASONING, REG4REC_ABLATIONS, S2GR_ABLATIONS
    from tests.assets.pipeline import TINY_CODEBOOKS

    source, _, _ = trained_warehouse
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(source, path)
    shutil.copytree(source.parent / "artifacts", tmp_path / "artifacts")
    # LASAR's Stage 2 needs the CoT assets: tests/assets/test_lasar.py trains it
    specs = [*REASONING, *S2GR_ABLATIONS, *CARE_ABLATIONS, *REG4REC_ABLATIONS, *[s for s in LASAR if not s.cot],
             *BASELINES]
    # the variants whose point is their codes keep them; the rest share the fastest codebook
    codes = {"s2gr_wo_coba": "rq_vae", "care_letter": "letter", "reg4rec": "mpq", "reg4rec_wo_mpq": "rq_vae_8x300",
             "minionerec": "rq_kmeans_4x256",
             **{s.prefix: "mpq" for s in REG4REC_ABLATIONS if s.source}}  # those start from reg4rec's weights
    item_settings = {"d_model": 16}  # a field every item-id model has
    needed = ("rq_vae", "letter", "mpq", "rq_vae_8x300", "rq_kmeans_4x256")
    ops = {**{k: v for k, v in TINY_CODEBOOKS["ops"].items() if k.split("_codebook")[0] in needed}}
    for spec in specs:
        items = spec.tokenizer is None
        ops.update(tiny_training(spec.prefix, tokenizer="" if items else codes.get(spec.prefix, "rq_kmeans"),
                                 model_settings=item_settings if items else None))
    selection = [*[f"{name}_codebook" for name in needed],
                 *[f"{spec.prefix}_{kind}" for spec in specs for kind in ("checkpoint", "metrics")]]
    result = materialize(path, run_config={"ops": ops}, selection=selection, raise_on_error=False)
    failures = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"
                and not e.step_key.endswith("beats_popularity")]
    errors = [e.event_specific_data.error.message.splitlines()[0] for e in result.all_events
              if e.event_type_value == "STEP_FAILURE" and e.step_key in failures]
    assert failures == [], errors
    with warehouse.connect(path, read_only=True) as con:
        written = set(con.execute("SELECT DISTINCT model, variant FROM metrics WHERE model <> 'popularity'").fetchall())
    assert {(spec.model, spec.variant) for spec in specs} <= written
    artifacts = tmp_path / "artifacts" / "synthetic" / "models"
    started = read_run_info(artifacts / "reg4rec_wo_pars")["derived_from"]["workdir"]
    assert Path(started).resolve() == (artifacts / "reg4rec").resolve()


def test_a_bundle_run_outside_dagster_reproduces_the_asset_metrics(trained_warehouse, tmp_path):
    """Export the warehouse's inputs, train with the asset's settings through the CLI: the same figures."""
    import json

    from genrec_ml.cli import main, read_metrics
    from tests.assets.pipeline import TINY_MODEL, TINY_TRAIN

    path, result, _ = trained_warehouse
    bundle = tmp_path / "bundle"
    assert main(["export", "--dataset", "synthetic", "--tokenizer", "rq_kmeans", "--out", str(bundle),
                 "--warehouse", str(path), "--artifacts", str(path.parent / "artifacts")]) == 0
    assert main(["train", "--bundle", str(bundle), "--workdir", str(tmp_path / "run"), "--model", "tiger",
                 "--threads", "1", "--model-settings", json.dumps(TINY_MODEL),
                 "--train-settings", json.dumps(TINY_TRAIN)]) == 0
    with warehouse.connect(path, read_only=True) as con:
        asset = con.execute("SELECT split, metric, k, value FROM metrics WHERE model = 'tiger' AND dagster_run_id = $r",
                            {"r": result.run_id}).df()
    merged = read_metrics(tmp_path / "run" / "metrics.csv").merge(asset, on=["split", "metric", "k"],
                                                                  suffixes=("_cli", "_asset"))
    assert len(merged) == len(asset) > 0
    assert (merged["value_cli"] == merged["value_asset"]).all()
