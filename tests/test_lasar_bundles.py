"""LASAR's line through bundles, without Dagster: the teacher CoTs travel in the bundle, `cli train --init-from`
starts Stage 2 and the explicit-CoT baseline from a Stage-1 workdir (LASAR's anchors computed there, as the
cot_anchor_states asset computes them), and `reproduce` plans Stage 1 first, skips what is done and retrains
what started from a Stage-1 run that was trained again."""

import json

import numpy as np
import pandas as pd
import pytest

from genrec_ml.cli import main
from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.experiments import Catalog, read_run_info
from genrec_ml.inputs import COT, META, bundle_cot, read_bundle, write_bundle
from genrec_ml.reproduce import bundle_name, plan_runs
from genrec_ml.text.anchors import anchors_by_example, stage1_anchor_rows
from tests.test_experiments import N_ITEMS, SIZES, TINY_TRAIN, splits_table

DECODER = {"n_layers": 1, "d_model": 16, "n_heads": 2, "n_kv_heads": 1, "head_dim": 8, "d_ff": 32}
MODEL_SETTINGS = {"minionerec": DECODER, "explicit_cot": {**DECODER, "max_cot_tokens": 24},
                  "lasar": {**DECODER, "max_steps": 3, "rl_steps": 2, "rl_users": 4, "rl_group": 4,
                            "rl_eval_every": 2},
                  "lasar_sft": {"rl_steps": 0}}
TRAIN_SETTINGS = {**TINY_TRAIN, "max_steps": 3, "eval_max_examples": 16, "checkpoint_every_steps": 2}
TOKENIZER = "rq_kmeans_4x256"


def cot_rows(splits: pd.DataFrame) -> pd.DataFrame:
    train = splits[splits["split"] == "train"]
    return pd.DataFrame({"user_index": train["user_index"].to_numpy(),
                         "target_position": train["target_position"].to_numpy(),
                         "segments": [[f"Evidence: item {h[-1]} came last."] + ["Intent: more of it."] * (len(h) % 3)
                                      for h in train["history"]]})


@pytest.fixture
def cot_bundles(tmp_path):
    splits, sids = splits_table(n_users=24)
    folder = tmp_path / "bundles"
    catalog = Catalog(n_items=N_ITEMS, sids=sids, codebook_sizes=SIZES,
                      titles=tuple(f"item {i} of kind {i % 5}" for i in range(N_ITEMS)))
    write_bundle(folder / bundle_name("toy", TOKENIZER, None), splits, catalog, dataset="toy", tokenizer=TOKENIZER,
                 cot_texts=cot_rows(splits))
    return folder, splits, catalog


def test_cot_texts_round_trip_in_a_bundle_and_a_broken_one_is_named(cot_bundles, tmp_path):
    folder, splits, catalog = cot_bundles
    bundle = read_bundle(folder / bundle_name("toy", TOKENIZER, None))
    expected = cot_rows(splits)
    assert bundle.meta["cot_rows"] == len(expected)
    assert bundle.cot_texts["segments"].tolist() == expected["segments"].tolist()
    assert bundle_cot(bundle, "explicit_cot", None) is bundle.cot_texts and bundle_cot(bundle, "tiger", None) is None
    with pytest.raises(GenrecConfigError, match="--init-from"):
        bundle_cot(bundle, "lasar", None)
    plain = write_bundle(tmp_path / "plain", splits, catalog, dataset="toy", tokenizer=TOKENIZER)
    with pytest.raises(GenrecDataError, match="materialize cot_texts"):
        bundle_cot(read_bundle(plain), "explicit_cot", None)
    (folder / bundle_name("toy", TOKENIZER, None) / COT).unlink()
    with pytest.raises(GenrecDataError, match="CoT rows but the file is missing"):
        read_bundle(folder / bundle_name("toy", TOKENIZER, None))


def test_reproduce_trains_stage1_first_then_lasar_and_explicit_cot_from_it(cot_bundles, tmp_path, capsys):
    folder, splits, _ = cot_bundles
    out = tmp_path / "runs"
    args = ["reproduce", "--bundles", str(folder), "--models", "lasar,explicit_cot_gen", "--seeds", "0",
            "--out", str(out), "--model-settings", json.dumps(MODEL_SETTINGS), "--train-settings",
            json.dumps(TRAIN_SETTINGS), "--threads", "1", "--parallel", "2", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "5 runs (5 train)" in printed
    runs = {prefix: out / "toy" / prefix / "seed0" for prefix in
            ("minionerec", "lasar_sft", "lasar", "explicit_cot", "explicit_cot_gen")}
    info = {prefix: read_run_info(workdir) for prefix, workdir in runs.items()}
    assert all((workdir / "metrics.csv").is_file() for workdir in runs.values())
    stage1 = info["minionerec"]["evaluation_id"]
    for prefix in ("lasar_sft", "explicit_cot"):
        started = info[prefix]["initialised_from"]
        assert started["model"] == "minionerec" and started["evaluation_id"] == stage1
        assert info[prefix]["cot_examples"] == len(cot_rows(splits))
    assert info["lasar"]["derived_from"]["evaluation_id"] == info["lasar_sft"]["evaluation_id"]
    assert info["lasar"]["post_training"]["steps"] == 2
    assert info["explicit_cot_gen"]["derived_from"]["evaluation_id"] == info["explicit_cot"]["evaluation_id"]
    assert info["explicit_cot_gen"]["experiment"]["variant"] == "cot_gen"
    assert info["explicit_cot_gen"]["experiment"]["model_overrides"]["inference"] == "generate"

    # the anchors `cli train` computed are the asset's computation under that Stage-1 checkpoint
    bundle = read_bundle(folder / bundle_name("toy", TOKENIZER, None))
    anchors = bundle_cot(bundle, "lasar", runs["minionerec"] / "best.pt", "cpu")
    expected = anchors_by_example(stage1_anchor_rows(runs["minionerec"] / "best.pt", bundle.cot_texts))
    assert all(np.array_equal(a, b) for a, b in zip(anchors["anchors"], expected["anchors"], strict=True))

    assert main(args) == 0
    assert "skipping 5 runs already done" in capsys.readouterr().out
    # Stage 1 trained again (another evaluation): what started from it is stale
    (runs["minionerec"] / "run.json").write_text(json.dumps({**info["minionerec"], "evaluation_id": "new"}))
    planned = plan_runs(folder, ["lasar", "explicit_cot_gen"], [0], "smoke", out,
                        model_settings=MODEL_SETTINGS, train_settings=TRAIN_SETTINGS, device="cpu")
    status = {run.spec.prefix: run.status for run in planned}
    assert status["minionerec"] == "done" and status["lasar_sft"] == status["explicit_cot"] == "retrain"
    assert status["lasar"] == status["explicit_cot_gen"] == "retrain"  # and what started from those


def test_reproduce_asks_for_bundles_with_the_cot_texts(cot_bundles, tmp_path):
    folder, splits, catalog = cot_bundles
    bare = tmp_path / "bare"
    write_bundle(bare / bundle_name("toy", TOKENIZER, None), splits, catalog, dataset="toy", tokenizer=TOKENIZER)
    assert json.loads((bare / bundle_name("toy", TOKENIZER, None) / META).read_text())["cot_rows"] == 0
    with pytest.raises(GenrecDataError, match="materialize cot_texts first"):
        plan_runs(bare, ["explicit_cot"], [0], "smoke", tmp_path / "runs")
    assert plan_runs(bare, ["minionerec"], [0], "smoke", tmp_path / "runs")  # Stage 1 alone needs no CoT
