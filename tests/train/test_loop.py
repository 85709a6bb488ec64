"""The training loop on tiny synthetic tasks: learning, resume parity, checkpoints, determinism."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from genrec_ml.data.sequences import SequenceDataset, collate
from genrec_ml.decoding import Trie
from genrec_ml.errors import GenrecConfigError
from genrec_ml.eval import evaluate, popularity_topk
from genrec_ml.models.tiger import Tiger, tiger_config
from genrec_ml.train.checkpoint import load_checkpoint, read_checkpoint, save_atomic
from genrec_ml.train.config import TrainConfig, train_config
from genrec_ml.train.loop import evaluate_split, lr_factor, train

SIZES = (4, 4, 4)
N_ITEMS = 64


class Killed(Exception):
    """Stands in for a crash (preemption, OOM) in the middle of training."""


def next_item_task(n_train: int, n_valid: int, history_length: int = 2, seed: int = 0):
    """Items with all 64 SIDs of (4, 4, 4); each target is a fixed permutation of the last history item."""
    rng = np.random.default_rng(seed)
    sids = np.array(list(itertools.product(*[range(k) for k in SIZES])))[rng.permutation(N_ITEMS)]
    successor = rng.permutation(N_ITEMS)

    def split(n, name):
        histories = rng.integers(0, N_ITEMS, (n, history_length))
        return pd.DataFrame({
            "scheme": "loo", "split": name, "user_index": np.arange(n),
            "target_item_index": successor[histories[:, -1]], "history": list(histories),
        })

    return split(n_train, "train"), split(n_valid, "valid"), sids


def small_model(seed: int = 0, dropout: float = 0.0) -> Tiger:
    torch.manual_seed(seed)
    return Tiger(tiger_config("smoke", SIZES, n_user_buckets=16, d_model=32, n_heads=2, d_kv=16, d_ff=64,
                              n_encoder_layers=1, n_decoder_layers=1, dropout=dropout))


def quick_config(**overrides) -> TrainConfig:
    fields = dict(lr=1e-2, warmup_steps=10, batch_size=64, max_epochs=2, eval_beam_width=10, progress=False,
                  patience=0, checkpoint_every_steps=1000, log_every_steps=1)
    return TrainConfig(**(fields | overrides))


def test_training_learns_a_deterministic_next_item_rule(tmp_path):
    train_examples, valid_examples, sids = next_item_task(1000, 200)
    model = small_model()
    result = train(model, train_examples, valid_examples, sids, quick_config(max_epochs=8), tmp_path)
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < 0.8 * first["train_loss"]
    counts = np.bincount(train_examples["target_item_index"], minlength=N_ITEMS)
    popular = evaluate(popularity_topk(counts, len(valid_examples), 10), valid_examples["target_item_index"], (10,))
    assert popular["recall@10"] < 0.25  # the rule spreads targets evenly: popularity is near random (10/64)
    assert result.best_metrics["recall@10"] >= max(0.4, 2 * popular["recall@10"])
    assert result.best_metrics["ndcg@10"] == max(h["ndcg@10"] for h in result.history)
    assert result.steps == 8 * 16 and result.best_checkpoint_path == tmp_path / "best.pt"


def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path):
    train_examples, valid_examples, sids = next_item_task(200, 40)
    # dropout on, so the resume must also restore the RNG streams to match
    config = quick_config(batch_size=32, max_epochs=3, checkpoint_every_steps=3)  # 7 steps per epoch
    reference = small_model(dropout=0.2)
    expected = train(reference, train_examples, valid_examples, sids, config, tmp_path / "whole")

    def crash_at_step_11(event, payload):
        if event == "step" and payload["step"] == 11:
            raise Killed

    interrupted = small_model(dropout=0.2)
    with pytest.raises(Killed):
        train(interrupted, train_examples, valid_examples, sids, config, tmp_path / "split", crash_at_step_11)
    assert read_checkpoint(tmp_path / "split" / "last.pt")["progress"]["step"] == 9
    resumed = small_model(seed=1, dropout=0.2)  # other initial weights: everything must come from last.pt
    result = train(resumed, train_examples, valid_examples, sids, config, tmp_path / "split")
    assert result.steps == expected.steps == 21
    assert result.history == expected.history
    for name, weight in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], weight, atol=1e-6, rtol=0, msg=name)


def test_same_seed_gives_the_same_run_and_another_seed_does_not(tmp_path):
    train_examples, valid_examples, sids = next_item_task(200, 40)
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        model = small_model(dropout=0.2)
        result = train(model, train_examples, valid_examples, sids, quick_config(seed=seed), tmp_path / name)
        runs.append((model.state_dict(), result.history))
    (weights_a, history_a), (weights_b, history_b), (weights_c, _) = runs
    assert history_a == history_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert not all(torch.equal(weights_a[k], weights_c[k]) for k in weights_a)  # data order and dropout differ


def test_checkpoint_round_trip_gives_identical_recommendations(tmp_path):
    train_examples, valid_examples, sids = next_item_task(200, 40)
    model = small_model()
    result = train(model, train_examples, valid_examples, sids, quick_config(), tmp_path)
    restored = load_checkpoint(tmp_path / "last.pt")
    assert type(restored) is Tiger and restored.config == model.config and not restored.training
    trie = Trie.from_sids(sids, model.vocab.codebook_sizes)
    data = SequenceDataset(valid_examples, sids, model.vocab)
    batch = collate([data[i] for i in range(len(data))])
    items, scores = model.recommend(batch, trie, beam_width=10, top_k=10)
    restored_items, restored_scores = restored.recommend(batch, trie, beam_width=10, top_k=10)
    assert torch.equal(items, restored_items) and torch.equal(scores, restored_scores)
    best = load_checkpoint(result.best_checkpoint_path)
    metrics = evaluate_split(best, valid_examples, sids, ks=(5, 10), beam_width=10)
    assert metrics["ndcg@10"] == pytest.approx(result.best_metrics["ndcg@10"])


def test_callback_sees_steps_evaluations_and_checkpoints(tmp_path):
    train_examples, valid_examples, sids = next_item_task(200, 40)
    events = []
    config = quick_config(checkpoint_every_steps=2, eval_unit="step", eval_every=3)
    result = train(small_model(), train_examples, valid_examples, sids, config, tmp_path,
                   lambda event, payload: events.append((event, payload)))
    steps = [p for e, p in events if e == "step"]
    assert [p["step"] for p in steps] == list(range(1, 9)) and result.steps == 8
    assert all(set(p) == {"loss", "lr", "step"} for p in steps)
    assert steps[0]["lr"] == pytest.approx(1e-3)  # first warmup step: 1/10 of the peak
    evals = [p for e, p in events if e == "eval"]
    assert [p["step"] for p in evals] == [3, 6, 8]  # every 3 steps, and once at the end
    assert all("ndcg@10" in p and "recall@10" in p for p in evals)
    saved = [p for e, p in events if e == "checkpoint"]
    assert {p["kind"] for p in saved} == {"last", "best"}
    assert all((tmp_path / p["path"].rsplit("/", 1)[-1]).is_file() for p in saved)
    assert not list(tmp_path.glob("*.tmp"))


def test_early_stopping_ends_a_run_that_stops_improving(tmp_path):
    train_examples, valid_examples, sids = next_item_task(200, 40)
    config = quick_config(lr=0.0, max_epochs=10, patience=2)  # lr 0: validation never improves
    result = train(small_model(), train_examples, valid_examples, sids, config, tmp_path)
    assert len(result.history) == 3 and result.steps == 3 * 4
    again = train(small_model(), train_examples, valid_examples, sids, config, tmp_path)  # resume: already done
    assert again.steps == result.steps and again.history == result.history


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    train_examples, valid_examples, sids = next_item_task(100, 20)
    train(small_model(), train_examples, valid_examples, sids, quick_config(max_epochs=1), tmp_path)
    other = Tiger(tiger_config("smoke", SIZES, n_user_buckets=16, d_model=16, n_heads=2, d_kv=8, d_ff=32))
    with pytest.raises(GenrecConfigError, match="different model"):
        train(other, train_examples, valid_examples, sids, quick_config(max_epochs=2), tmp_path)


def test_save_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    path = save_atomic({"step": 1}, tmp_path / "last.pt")
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        save_atomic({"step": 2, "bad": lambda: None}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert not list(tmp_path.glob("*.tmp"))


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    factors = [lr_factor(step, 10, 110, 0.1) for step in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert factors[60] == pytest.approx(0.55) and factors[110] == pytest.approx(0.1)


def test_train_config_validation_and_profiles():
    with pytest.raises(GenrecConfigError, match="monitor"):
        TrainConfig(monitor="ndcg@20")
    with pytest.raises(GenrecConfigError, match="eval_beam_width"):
        TrainConfig(eval_beam_width=5)
    with pytest.raises(GenrecConfigError, match="eval_unit"):
        TrainConfig(eval_unit="hour")
    paper = train_config("paper")
    assert (paper.lr, paper.warmup_steps, paper.batch_size, paper.max_steps) == (0.01, 10_000, 256, 200_000)
    assert train_config("smoke", batch_size=8).batch_size == 8
    assert train_config("paper", "items").lr == 1e-3  # item-id baselines: RecBole's recipe
    with pytest.raises(GenrecConfigError, match="batch_sise"):
        train_config("smoke", batch_sise=8)


def test_inverse_sqrt_schedule_holds_the_peak_then_decays_as_tiger():
    factors = [lr_factor(step, 10_000, 200_000, 0.1, "inverse_sqrt") for step in (0, 9_999, 39_999, 159_999)]
    assert factors == pytest.approx([1.0, 1.0, 0.5, 0.25])  # 0.01, then 0.01 * sqrt(10k / step)
    assert lr_factor(39_999, 10_000, 10**9, 0.1, "inverse_sqrt") == pytest.approx(0.5)  # the cap plays no part
    with pytest.raises(GenrecConfigError, match="schedule"):
        TrainConfig(schedule="linear")


def test_a_time_budget_ends_training_early_and_keeps_a_validated_best(tmp_path):
    train_examples, valid_examples, sids = next_item_task(400, 40)
    result = train(small_model(), train_examples, valid_examples, sids, quick_config(max_epochs=50,
                   max_train_seconds=1e-6), tmp_path)
    assert result.steps == 1 and len(result.history) == 1 and result.best_checkpoint_path.is_file()
    with pytest.raises(GenrecConfigError, match="max_train_seconds"):
        TrainConfig(max_train_seconds=0)
