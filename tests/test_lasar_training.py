"""LASAR's Stage 2 end to end below Dagster: anchor states from a Stage-1 model (= each text alone), their
stored rows round trip, CoT batches = per-example reference, warm start from Stage 1, and training."""

import numpy as np
import pandas as pd
import pytest
import torch

from genrec_ml.data.cot_sequences import CotSequenceDataset, attach_cot
from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.evaluation import evaluate_experiment
from genrec_ml.experiments import Catalog, Experiment, train_experiment
from genrec_ml.models.lasar import Lasar, LasarConfig
from genrec_ml.models.minionerec import MiniOneRec, MiniOneRecConfig
from genrec_ml.text.anchors import anchors_by_example, cot_anchor_rows, encode_last_states
from genrec_ml.train.checkpoint import model_payload, save_atomic, warm_start
from tests.models.test_minionerec import TINY
from tests.test_experiments import N_ITEMS, SIZES, TINY_TRAIN, splits_table

SEGMENTS = ["Evidence: 3 of the 5 items carry attribute 17.", "Preference: mascara leads.",
            "Recommendation: an item like eyeliner."]


def stage1(seed: int = 0, sizes=SIZES) -> MiniOneRec:
    torch.manual_seed(seed)
    return MiniOneRec(MiniOneRecConfig(codebook_sizes=sizes, **TINY)).eval()


def test_anchor_states_are_each_texts_last_hidden_state_alone_and_round_trip_as_rows():
    model = stage1()
    states = encode_last_states(model, SEGMENTS, batch_size=2)  # padded batches of unequal lengths
    for text, state in zip(SEGMENTS, states, strict=True):
        ids = torch.tensor([model.tokenizer.encode(text).ids])
        alone = model.lm.model(input_ids=ids).last_hidden_state[0, -1]
        assert torch.allclose(torch.from_numpy(state), alone, atol=1e-5)
    cot = pd.DataFrame({"user_index": [3, 1], "target_position": [2, 5],
                        "segments": [SEGMENTS[:2], [SEGMENTS[2], SEGMENTS[0]]]})
    rows = cot_anchor_rows(model, cot)
    assert rows["segment"].tolist() == [0, 1, 0, 1]
    examples = anchors_by_example(rows.sample(frac=1.0, random_state=0))  # any stored order
    assert examples[["user_index", "target_position", "n_segments"]].values.tolist() == [[1, 5, 2], [3, 2, 2]]
    assert np.allclose(examples["anchors"][0], states[[2, 0]].astype(np.float16))
    with pytest.raises(GenrecDataError, match="user_index 3, target_position 2 has segments"):
        anchors_by_example(rows.drop(index=0))
    with pytest.raises(GenrecDataError, match="wide"):
        anchors_by_example(rows, width=8)


def test_cot_batches_equal_the_per_example_reference():
    splits, sids = splits_table(n_users=6)
    train = splits[splits["split"] == "train"].reset_index(drop=True)
    rng = np.random.default_rng(0)
    chosen = train.iloc[[0, 2, 3]]
    cot = pd.DataFrame({"user_index": chosen["user_index"], "target_position": chosen["target_position"],
                        "n_segments": [2, 3, 1],
                        "anchors": [rng.normal(size=(n, 16)).astype(np.float16) for n in (2, 3, 1)]})
    examples = attach_cot(train, cot)
    data = CotSequenceDataset(examples, sids, MiniOneRec(MiniOneRecConfig(codebook_sizes=SIZES, **TINY)).vocab)
    indices = np.array([1, 2, 0, 3])
    batch = data.batch(indices)
    assert batch["n_segments"].tolist() == [0, 3, 2, 1] and batch["anchors"].shape == (4, 3, 16)
    for row, i in enumerate(indices):
        one = data[int(i)]
        n = int(one["n_segments"])
        assert torch.equal(batch["anchors"][row, :n], one["anchors"]) and not batch["anchors"][row, n:].any()
    with pytest.raises(GenrecDataError, match="example row 0 has 2 segments but 1"):
        CotSequenceDataset(examples.assign(anchors=[a[:1] if isinstance(a, np.ndarray) and len(a) == 2 else a
                                                    for a in examples["anchors"]]), sids, data.vocab)


def test_warm_start_loads_stage_one_and_refuses_another_architecture(tmp_path):
    source = stage1(seed=1)
    path = save_atomic(model_payload(source), tmp_path / "best.pt")
    torch.manual_seed(2)
    model = Lasar(LasarConfig(codebook_sizes=SIZES, **TINY))
    started = warm_start(model, path)
    assert started["model"] == "minionerec" and all(n.startswith("policy_head.") for n in started["fresh"])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())
    wider = Lasar(LasarConfig(codebook_sizes=SIZES, **{**TINY, "d_model": 32}))
    with pytest.raises(GenrecConfigError, match="init_from"):
        warm_start(wider, path)


def test_stage_two_trains_from_stage_one_with_cot_supervision_and_ranks(tmp_path):
    splits, sids = splits_table()
    catalog = Catalog(n_items=N_ITEMS, sids=sids, codebook_sizes=SIZES)
    model_settings = {**TINY, "d_model": 32, "head_dim": 16, "d_ff": 64}
    train_settings = {**TINY_TRAIN, "max_epochs": 2, "lr": 3e-3, "batch_size": 16}
    first = train_experiment(Experiment(model="minionerec", tokenizer="rq_kmeans_4x256", eval_ks=(5, 10),
                                        eval_beam_width=10, model_overrides=model_settings,
                                        train_overrides=train_settings), splits, catalog, tmp_path / "stage1")
    train = splits[(splits["split"] == "train")]
    # a CoT per training example whose length follows the history: 1 segment below 3 items, else 2
    segments = [["Preference: recent items lead."] + (["Recommendation: the next in line."] if len(h) >= 3 else [])
                for h in train["history"]]
    from genrec_ml.train.checkpoint import load_checkpoint

    rows = cot_anchor_rows(load_checkpoint(first.checkpoint),
                           pd.DataFrame({"user_index": train["user_index"], "target_position": train["target_position"],
                                         "segments": segments}))
    cot = anchors_by_example(rows)
    run = Experiment(model="lasar", tokenizer="rq_kmeans_4x256", eval_ks=(5, 10), eval_beam_width=10,
                     model_overrides={**model_settings, "max_steps": 3},
                     train_overrides={**train_settings, "lr": 1e-3})
    steps = []
    trained = train_experiment(run, splits, catalog, tmp_path / "stage2", init_from=first.checkpoint, cot=cot,
                               callback=lambda event, payload: steps.append(payload) if event == "step" else None)
    assert trained.info["initialised_from"]["model"] == "minionerec"
    assert trained.info["cot_examples"] == len(train)
    assert steps and all({"loss_ce", "loss_align", "loss_policy"} <= set(payload) for payload in steps)
    assert steps[-1]["loss_policy"] < steps[0]["loss_policy"]  # the head learns the segment counts
    value = evaluate_experiment(trained.checkpoint, splits, catalog).metrics.set_index(["split", "metric", "k"])
    assert 0.0 <= value.loc[("test", "recall", 10), "value"] <= 1.0
    from genrec_ml.train.checkpoint import load_checkpoint as load

    lasar = load(trained.checkpoint)
    assert isinstance(lasar, Lasar) and lasar.config.max_steps == 3


def test_stage_two_trains_at_a_tenth_of_the_profiles_lr_unless_told():
    stage1_lr = Experiment(model="minionerec", profile="cpu").train_config().lr
    assert Experiment(model="lasar", profile="cpu").train_config().lr == pytest.approx(stage1_lr / 10)
    assert Experiment(model="lasar", train_overrides={"lr": 0.5}).train_config().lr == 0.5
