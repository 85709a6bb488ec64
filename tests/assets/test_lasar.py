"""LASAR on the tiny synthetic partition: chains of thought written, checked and replaced atomically; their
anchor states under the Stage-1 model; LASAR's Stage 2 trained from Stage 1 on them, evaluated into `metrics`."""

import json
import shutil

import pytest

from genrec_ml import warehouse
from genrec_ml.experiments import read_run_info
from tests.assets.pipeline import (
    TINY_CODEBOOKS,
    TINY_DECODER,
    TINY_ICR_FLOOR,
    materialize,
    shared_instance,
    tiny_training,
)


@pytest.fixture
def data_warehouse(synthetic_warehouse, tmp_path):
    source, _ = synthetic_warehouse
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(source, path)
    return path


def _checks(result) -> dict[str, bool]:
    return {e.event_specific_data.check_name: e.event_specific_data.passed for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def test_cot_texts_cover_every_training_example_and_a_bad_file_keeps_them(data_warehouse, tmp_path):
    result = materialize(data_warehouse, selection=["cot_texts"])
    assert _checks(result) == {"cot_texts_cover_training_examples": True, "cot_texts_segments_valid": True}
    with warehouse.connect(data_warehouse, read_only=True) as con:
        n_train = con.execute("SELECT count(*) FROM splits WHERE dataset = 'synthetic' AND scheme = 'loo' "
                              "AND split = 'train'").fetchone()[0]
        cot = con.execute("SELECT * FROM cot_texts WHERE dataset = 'synthetic'").df()
    assert len(cot) == n_train and set(cot["scheme"]) == {"loo"}
    assert cot["n_segments"].between(1, 8).all() and cot["n_segments"].nunique() > 1
    # longer histories get more steps (LASAR Table 8's pattern)
    by_count = cot.groupby("n_segments")["history_length"].mean()
    assert by_count.iloc[-1] > by_count.iloc[0]
    metadata = next(e.event_specific_data.materialization.metadata for e in result.all_events
                    if e.event_type_value == "ASSET_MATERIALIZATION")
    assert metadata["dagster/row_count"].value == n_train and "n_segments" in metadata["segment_counts"].value

    # Stage 1, the anchors it gives every segment, Stage 2 from its weights, evaluated
    ops = {"rq_kmeans_4x256_codebook": TINY_CODEBOOKS["ops"]["rq_kmeans_4x256_codebook"],
           "rq_kmeans_4x256_codebook_icr_above_floor": TINY_ICR_FLOOR,
           "minionerec_checkpoint": tiny_training("minionerec", "rq_kmeans_4x256")["minionerec_checkpoint"],
           **tiny_training("lasar_sft", "rq_kmeans_4x256", {**TINY_DECODER, "max_steps": 4}),
           # the RL phase from lasar_sft's weights: a few steps of it
           **tiny_training("lasar", "rq_kmeans_4x256", {**TINY_DECODER, "max_steps": 4, "rl_steps": 2, "rl_users": 4,
                                                        "rl_group": 4, "rl_eval_every": 2}),
           # the explicit-CoT baseline from the same Stage-1 weights, and its weights decoded in reasoning mode
           **tiny_training("explicit_cot", "rq_kmeans_4x256", {**TINY_DECODER, "max_cot_tokens": 48}),
           **tiny_training("explicit_cot_gen", "rq_kmeans_4x256", {**TINY_DECODER, "max_cot_tokens": 48,
                                                                   "inference": "generate"})}
    stages = materialize(data_warehouse, run_config={"ops": ops}, selection=[
        "rq_kmeans_4x256_codebook", "minionerec_checkpoint", "cot_anchor_states", "lasar_sft_checkpoint",
        "lasar_sft_metrics", "lasar_checkpoint", "lasar_metrics", "explicit_cot_checkpoint", "explicit_cot_metrics",
        "explicit_cot_gen_checkpoint", "explicit_cot_gen_metrics"], raise_on_error=False)
    failures = [e.step_key for e in stages.all_events if e.event_type_value == "STEP_FAILURE"]
    # two tiny epochs may trail popularity
    assert {f.removesuffix("_metrics_beats_popularity") for f in failures} <= {
        "lasar_sft", "lasar", "explicit_cot", "explicit_cot_gen"}, failures
    checks = _checks(stages)
    assert checks["cot_anchor_states_cover_segments"] and checks["cot_anchor_states_finite"]
    with warehouse.connect(data_warehouse, read_only=True) as con:
        anchors = con.execute("SELECT count(*), min(width), max(width) FROM cot_anchor_states "
                              "WHERE dataset = 'synthetic'").fetchone()
        steps = con.execute("SELECT metric, value FROM metrics WHERE model = 'lasar' AND variant = 'sft_kl_align' "
                            "AND split = 'test' "
                            "AND (metric LIKE 'latent_steps%' OR metric = 'recall')").df()
    assert anchors == (int(cot["n_segments"].sum()), TINY_DECODER["d_model"], TINY_DECODER["d_model"])
    mean = steps.set_index("metric")["value"]
    assert 1 <= mean["latent_steps_mean"] <= 4
    assert abs(mean[mean.index.str.startswith("latent_steps_share")].sum() - 1) < 1e-9
    lasar = next(e.event_specific_data.materialization.metadata for e in stages.all_events
                 if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key.path[-1] == "lasar_sft_metrics")
    assert "latent_steps" in lasar
    rl = next(e.event_specific_data.materialization.metadata for e in stages.all_events
              if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key.path[-1] == "lasar_checkpoint")
    assert rl["rl_steps"].value == 2 and "rl_dynamics" in rl and "started_from" in rl
    # the run's event log shows the phases while they run: validations, the RL phase's steps and validations
    logged = [e.user_message for e in shared_instance().all_logs(stages.run_id) if e.user_message]
    mine = [m for m in logged if m.startswith(("lasar_sft seed 0: ", "lasar seed 0: "))]
    assert any(m.startswith("lasar_sft seed 0: valid step ") and "valid_ndcg_at_10" in m for m in mine), mine
    assert any(m.startswith("lasar seed 0: rl_valid step 2: ") and "rl_valid_ndcg_at_10" in m for m in mine), mine
    with warehouse.connect(data_warehouse, read_only=True) as con:
        variants = {v for (v,) in con.execute("SELECT DISTINCT variant FROM metrics WHERE model = 'lasar'").fetchall()}
    assert variants == {"sft_kl_align", "default"}
    explicit = read_run_info(data_warehouse.parent / "artifacts" / "synthetic" / "models" / "explicit_cot")
    assert explicit["initialised_from"]["model"] == "minionerec" and explicit["cot_examples"] == len(cot)
    with warehouse.connect(data_warehouse, read_only=True) as con:
        explicit_rows = con.execute("SELECT variant, count(*) FROM metrics WHERE model = 'explicit_cot' "
                                    "AND split = 'test' GROUP BY variant").fetchall()
    assert {v for v, n in explicit_rows if n > 0} == {"default", "cot_gen"}

    # a user's file from any LLM; one bad line fails the run and leaves the template CoTs in place
    path = tmp_path / "cot.jsonl"
    rows = [{"user_index": int(u), "target_position": int(p), "cot": "Step 1: evidence. Step 2: intent."}
            for u, p in zip(cot["user_index"], cot["target_position"], strict=True)]
    path.write_text("\n".join(json.dumps(r) for r in rows[:5]) + "\n{broken\n")
    config = {"ops": {"cot_texts": {"config": {"teacher": "jsonl", "path": str(path)}}}}
    failed = materialize(data_warehouse, run_config=config, selection=["cot_texts"], raise_on_error=False)
    assert not failed.success
    errors = [e.event_specific_data.error.to_string() for e in failed.all_events
              if e.event_type_value == "STEP_FAILURE"]
    assert any(f"{path}, line 6: not JSON" in message for message in errors)
    with warehouse.connect(data_warehouse, read_only=True) as con:
        kept = con.execute("SELECT count(*) FROM cot_texts WHERE dataset = 'synthetic'").fetchone()[0]
    assert kept == n_train

    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    replaced = materialize(data_warehouse, run_config=config, selection=["cot_texts"])
    assert all(_checks(replaced).values())
    with warehouse.connect(data_warehouse, read_only=True) as con:
        segments = con.execute("SELECT DISTINCT n_segments FROM cot_texts WHERE dataset = 'synthetic'").fetchall()
    assert segments == [(1,)] or segments == [(2,)]  # one text for all: one segmentation for all
