"""Experiments: train -> best.pt + run.json, resume after a kill, evaluation rows, popularity floor."""

import itertools

import numpy as np
import pandas as pd
import pytest

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.evaluation import evaluate_experiment, evaluate_popularity, metric_rows
from genrec_ml.experiments import (
    Catalog,
    Experiment,
    catalog_from_rows,
    read_run_info,
    split_examples,
    train_experiment,
)
from genrec_ml.models.registry import model_config

SIZES = (4, 4, 4)
N_ITEMS = 64
TINY_MODEL = dict(n_user_buckets=8, d_model=16, n_heads=2, d_kv=8, d_ff=32, n_encoder_layers=1, n_decoder_layers=1,
                  dropout=0.0)
TINY_TRAIN = dict(lr=1e-2, warmup_steps=5, batch_size=32, max_epochs=2, eval_beam_width=10, progress=False,
                  patience=0, checkpoint_every_steps=3, eval_max_examples=None, log_every_steps=1)


class Killed(Exception):
    pass


def splits_table(n_users: int = 60, length: int = 6, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Leave-one-out splits of users walking a fixed successor permutation, and the catalog SIDs."""
    rng = np.random.default_rng(seed)
    sids = np.array(list(itertools.product(*[range(k) for k in SIZES])))[rng.permutation(N_ITEMS)]
    return successor_splits(rng, N_ITEMS, n_users, length), sids


def successor_splits(rng: np.random.Generator, n_items: int, n_users: int, length: int) -> pd.DataFrame:
    """Leave-one-out splits of users walking one fixed successor permutation of the items."""
    successor = rng.permutation(n_items)
    rows = []
    for user in range(n_users):
        seq = [int(rng.integers(n_items))]
        for _ in range(length - 1):
            seq.append(int(successor[seq[-1]]))
        for pos in range(1, length):
            split = "train" if pos < length - 2 else ("valid" if pos == length - 2 else "test")
            rows.append(("loo", split, user, pos, seq[pos], seq[:pos]))
    columns = ["scheme", "split", "user_index", "target_position", "target_item_index", "history"]
    return pd.DataFrame(rows, columns=columns)


def experiment(**overrides) -> Experiment:
    fields = dict(model="tiger", tokenizer="rq_kmeans", model_overrides=TINY_MODEL, train_overrides=TINY_TRAIN,
                  eval_ks=(5, 10), eval_beam_width=10)
    return Experiment(**(fields | overrides))


def test_train_then_evaluate_writes_best_checkpoint_run_info_and_metric_rows(tmp_path):
    splits, sids = splits_table()
    catalog = Catalog(n_items=N_ITEMS, sids=sids, codebook_sizes=SIZES)
    trained = train_experiment(experiment(), splits, catalog, tmp_path)
    assert trained.checkpoint == tmp_path / "best.pt" and trained.checkpoint.is_file()
    assert not (tmp_path / "training").exists()  # finished: the next call trains afresh
    info = read_run_info(tmp_path)
    assert info["experiment"]["tokenizer"] == "rq_kmeans" and info["steps"] == trained.result.steps > 0
    evaluation = evaluate_experiment(trained.checkpoint, splits, catalog)
    rows = evaluation.metrics
    assert set(rows["split"]) == {"valid", "test"}
    assert set(rows[rows["metric"] == "ndcg"]["k"]) == {5, 10} and (rows[rows["metric"] == "mrr"]["k"] == -1).all()
    valid_ndcg = rows[(rows["split"] == "valid") & (rows["metric"] == "ndcg") & (rows["k"] == 10)]["value"].item()
    assert valid_ndcg == pytest.approx(trained.result.best_metrics["ndcg@10"])
    assert evaluation.users == {"valid": 60, "test": 60}
    assert evaluation.token_recall.shape == (3,) and evaluation.token_bias.amplification.shape == (3,)
    levels = rows[rows["metric"].str.startswith("token_recall_l")].set_index("metric")
    assert list(levels.index) == ["token_recall_l0", "token_recall_l1", "token_recall_l2"]
    assert levels["value"].tolist() == pytest.approx(evaluation.token_recall.tolist())
    assert set(levels["split"]) == {"test"} and set(levels["k"]) == {1}
    amplification = rows[rows["metric"].str.startswith("popularity_amplification_l")]
    finite = [float(x) for x in evaluation.token_bias.amplification if x == x]
    assert amplification["value"].tolist() == pytest.approx(finite) and set(amplification["k"]) == {10}


def test_a_killed_training_resumes_and_ends_like_an_uninterrupted_one(tmp_path):
    splits, sids = splits_table()
    catalog = Catalog(n_items=N_ITEMS, sids=sids, codebook_sizes=SIZES)
    whole = train_experiment(experiment(), splits, catalog, tmp_path / "whole")

    def crash(event, payload):
        if event == "step" and payload["step"] == 7:
            raise Killed

    with pytest.raises(Killed):
        train_experiment(experiment(), splits, catalog, tmp_path / "split", callback=crash)
    assert (tmp_path / "split" / "training" / "last.pt").is_file() and not (tmp_path / "split" / "best.pt").exists()
    resumed = train_experiment(experiment(), splits, catalog, tmp_path / "split")
    assert resumed.result.history == whole.result.history


def test_an_interrupted_run_of_other_settings_is_discarded_not_resumed(tmp_path):
    splits, sids = splits_table()
    catalog = Catalog(n_items=N_ITEMS, sids=sids, codebook_sizes=SIZES)

    def crash(event, payload):
        if event == "step" and payload["step"] == 7:
            raise Killed

    with pytest.raises(Killed):
        train_experiment(experiment(), splits, catalog, tmp_path, callback=crash)
    other = experiment(seed=3)
    result = train_experiment(other, splits, catalog, tmp_path)
    fresh = train_experiment(other, splits, catalog, tmp_path / "fresh")
    assert result.result.history == fresh.result.history


def test_popularity_rows_match_a_hand_computed_example():
    # item 1 is the most frequent training target (3), then 2 (2), then 0 (1)
    splits = pd.DataFrame({
        "scheme": "loo",
        "split": ["train"] * 6 + ["valid", "valid", "test", "test"],
        "user_index": [0, 0, 1, 1, 2, 2, 0, 1, 0, 1],
        "target_item_index": [1, 1, 1, 2, 2, 0, 1, 0, 2, 3],
        "history": [[0]] * 10,
    })
    rows = evaluate_popularity(splits, n_items=4, ks=(1, 2))
    value = rows.set_index(["split", "metric", "k"])["value"]
    assert value["valid", "recall", 1] == pytest.approx(0.5)  # user 0's target is item 1 (rank 1)
    assert value["valid", "ndcg", 2] == pytest.approx(0.5)  # item 0 is ranked 3rd: outside top-2
    assert value["test", "recall", 2] == pytest.approx(0.5)  # item 2 at rank 2, item 3 at rank 4
    assert value["test", "ndcg", 2] == pytest.approx(0.5 / np.log2(3))
    assert value["test", "mrr", -1] == pytest.approx((1 / 2 + 0) / 2)  # lists hold max(ks) = 2 items


def test_metric_rows_split_names_and_cutoffs():
    assert metric_rows({"ndcg@10": 0.5, "mrr": 0.25}, "test") == [
        {"split": "test", "metric": "ndcg", "k": 10, "value": 0.5},
        {"split": "test", "metric": "mrr", "k": -1, "value": 0.25},
    ]


def test_catalog_from_rows_orders_codes_and_rejects_stale_codebooks():
    rows = pd.DataFrame({"item_index": [1, 0, 1, 0], "level": [0, 0, 1, 1], "code": [3, 2, 0, 1]})
    catalog = catalog_from_rows(2, rows, quantizer_sizes=(4,))
    assert catalog.sids.tolist() == [[2, 1], [3, 0]] and catalog.codebook_sizes == (4, 2)
    with pytest.raises(GenrecDataError, match="out of date"):
        catalog_from_rows(3, rows, quantizer_sizes=(4,))


def test_bad_experiments_and_splits_are_named():
    with pytest.raises(GenrecConfigError, match="unknown model"):
        Experiment(model="gpt9")
    with pytest.raises(GenrecConfigError, match="tokenizer"):
        Experiment(model="tiger", tokenizer=None)
    with pytest.raises(GenrecConfigError, match="eval_beam_width"):
        Experiment(eval_ks=(5, 50), eval_beam_width=20)
    with pytest.raises(GenrecConfigError, match="d_modle"):
        model_config("tiger", "smoke", {"codebook_sizes": SIZES}, {"d_modle": 3})
    splits, _ = splits_table()
    with pytest.raises(GenrecDataError, match="ratio"):
        split_examples(splits, "ratio")


def test_item_id_models_train_and_rank_the_whole_catalog(tmp_path):
    splits, _ = splits_table()
    catalog = Catalog(n_items=N_ITEMS)
    run = Experiment(model="sasrec", train_overrides={**TINY_TRAIN, "max_epochs": 6}, eval_ks=(5, 10),
                     model_overrides={"d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.0})
    assert run.tokenizer is None and run.kind == "items"
    trained = train_experiment(run, splits, catalog, tmp_path)
    evaluation = evaluate_experiment(trained.checkpoint, splits, catalog)
    value = evaluation.metrics.set_index(["split", "metric", "k"])["value"]
    popularity = evaluate_popularity(splits, N_ITEMS, ks=(5, 10)).set_index(["split", "metric", "k"])["value"]
    # every user walks the same successor permutation: a sequence model learns it, popularity cannot
    assert value["test", "recall", 10] > popularity["test", "recall", 10] + 0.2
    assert evaluation.token_bias is None and evaluation.thinking is None
