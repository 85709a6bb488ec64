"""Length-grouped batches: every example once, seeded orders, less padding, and parity with plain batches.

The batch fast path (`dataset.batch(indices)`, gathers on the device) must equal the per-example
reference (`collate([dataset[i] ...])`); a model's per-example outputs must not depend on how much
its batch pads; evaluation over length-sorted batches must rank exactly as in example order.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from genrec_ml.data.batching import epoch_batches, length_sorted_batches, padding_share, shard
from genrec_ml.data.item_sequences import ItemSequenceDataset, collate_items
from genrec_ml.data.sequences import SequenceDataset, collate
from genrec_ml.eval import evaluate
from genrec_ml.train.loop import rank_split
from genrec_ml.train.tasks import task_for
from genrec_ml.vocab import SidVocab
from tests.models.baselines.tiny import N_ITEMS as BASELINE_ITEMS
from tests.models.baselines.tiny import VARIANTS
from tests.models.baselines.tiny import tiny_model as tiny_item_model
from tests.models.test_care import tiny_care
from tests.models.test_s2gr import tiny_s2gr
from tests.models.tiny import SIZES, catalog, tiny_model


def skewed_lengths(n: int = 1000, seed: int = 0) -> np.ndarray:
    """Mostly short histories with a long tail, as on Amazon data (mean ~6, max 20)."""
    rng = np.random.default_rng(seed)
    return np.minimum(1 + rng.geometric(0.2, n), 20)


def test_hand_example_sorts_each_mega_batch_and_cuts_it_into_batches():
    lengths = np.array([1, 5, 2, 4, 3, 6])
    batches = epoch_batches(lengths, batch_size=2, seed=0, epoch=0, mega_batch_factor=3)  # one mega-batch of 6
    assert sorted(sorted(lengths[b].tolist()) for b in batches) == [[1, 2], [3, 4], [5, 6]]
    two = epoch_batches(lengths, batch_size=2, seed=0, epoch=0, mega_batch_factor=1)  # mega-batch = one batch
    plain = epoch_batches(lengths, batch_size=2, seed=0, epoch=0, group_by_length=False)
    assert sorted(map(tuple, map(sorted, two))) == sorted(map(tuple, map(sorted, plain)))  # nothing to sort across


@pytest.mark.parametrize("grouped", [True, False])
def test_every_example_once_and_orders_fixed_by_seed_and_epoch(grouped):
    lengths = skewed_lengths(1003)
    batches = epoch_batches(lengths, 64, seed=3, epoch=1, group_by_length=grouped)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1003))
    assert sum(len(b) < 64 for b in batches) == 1  # one short batch, whatever the grouping
    again = epoch_batches(lengths, 64, seed=3, epoch=1, group_by_length=grouped)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    for other in (epoch_batches(lengths, 64, seed=3, epoch=2, group_by_length=grouped),
                  epoch_batches(lengths, 64, seed=4, epoch=1, group_by_length=grouped)):
        assert not all(np.array_equal(a, b) for a, b in zip(batches, other, strict=False))


def test_grouping_removes_most_of_the_padding():
    lengths = skewed_lengths(20_000)
    random = padding_share(lengths, epoch_batches(lengths, 256, 0, 0, group_by_length=False))
    grouped = padding_share(lengths, epoch_batches(lengths, 256, 0, 0))
    assert random > 0.5 and grouped < 0.05  # random batches pad to their longest (≈ 20) history
    assert padding_share(lengths, length_sorted_batches(lengths, 256)) <= grouped  # a global sort: least


def test_grouped_batches_come_in_shuffled_order_not_by_length():
    lengths = skewed_lengths(256 * 100)
    longest = [int(lengths[b].max()) for b in epoch_batches(lengths, 256, 0, 0)]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_shard_gives_every_rank_as_many_batches_and_covers_all():
    batches = [np.array([i]) for i in range(5)]
    ranks = [shard(batches, rank, 2) for rank in range(2)]
    assert [len(r) for r in ranks] == [3, 3]
    assert {int(b[0]) for r in ranks for b in r} == set(range(5))
    assert shard(batches, 0, 1) is batches


def sid_examples(n: int, n_items: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    histories = [rng.integers(0, n_items, rng.integers(0, 7)).tolist() for _ in range(n)]  # some empty
    return pd.DataFrame({"user_index": rng.integers(0, 1000, n), "target_item_index": rng.integers(0, n_items, n),
                         "history": histories})


@pytest.mark.parametrize("user_buckets, eos", [(5, False), (0, False), (5, True), (0, True)])
def test_sid_batch_fast_path_equals_collate(user_buckets, eos):
    sids = catalog(30)
    data = SequenceDataset(sid_examples(40, 30), sids, SidVocab(SIZES, user_buckets, eos), max_history=4)
    for indices in (np.arange(40), np.array([3, 17, 5]), np.flatnonzero(data.lengths == 0)[:2]):
        fast, reference = data.batch(indices), collate([data[int(i)] for i in indices])
        assert fast.keys() == reference.keys()
        for key in reference:
            assert torch.equal(fast[key], reference[key]), key


def test_item_batch_fast_path_equals_collate_items():
    data = ItemSequenceDataset(sid_examples(40, BASELINE_ITEMS, seed=1), BASELINE_ITEMS, max_history=4)
    for indices in (np.arange(40), np.array([9, 2]), np.flatnonzero(data.lengths == 0)[:2]):
        fast, reference = data.batch(indices), collate_items([data[int(i)] for i in indices])
        assert fast.keys() == reference.keys()
        for key in reference:
            assert torch.equal(fast[key], reference[key]), key


def short_and_long(n_items: int) -> pd.DataFrame:
    """Six short histories (the grouped batch) and one long one (what an ungrouped batch pads to)."""
    histories = [[1, 2], [3], [4, 5], [6, 7], [8], [9, 1], list(range(n_items))[:12]]
    return pd.DataFrame({"user_index": np.arange(7) * 3, "target_item_index": np.arange(7) % n_items,
                         "history": histories})


def per_example_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, L, K) or (B, N) logits -> (B,) cross-entropy, averaged over levels."""
    if logits.ndim == 2:
        return torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(1)


@pytest.mark.parametrize("make", [lambda: tiny_model(3), lambda: tiny_care(3, queries_per_level=(1, 2, 1)),
                                  lambda: tiny_s2gr(3)], ids=["tiger", "care", "s2gr"])
def test_sid_per_example_loss_is_the_same_in_a_grouped_and_an_ungrouped_batch(make):
    model = make().train()  # dropout 0: train mode is deterministic
    data = SequenceDataset(short_and_long(30), catalog(30), model.vocab)
    grouped, ungrouped = data.batch(np.arange(6)), data.batch(np.arange(7))
    assert grouped["input_ids"].shape[1] < ungrouped["input_ids"].shape[1]
    grouped_loss = per_example_ce(model(grouped)[0], grouped["targets"])
    ungrouped_loss = per_example_ce(model(ungrouped)[0], ungrouped["targets"])[:6]
    torch.testing.assert_close(grouped_loss, ungrouped_loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["sasrec", "gru4rec", "caser", "bert4rec", "rearec-erl"])
def test_item_per_example_loss_is_the_same_in_a_grouped_and_an_ungrouped_batch(variant):
    model = tiny_item_model(variant, max_history=12)
    data = ItemSequenceDataset(short_and_long(BASELINE_ITEMS), BASELINE_ITEMS)
    grouped, ungrouped = data.batch(np.arange(6)), data.batch(np.arange(7))
    assert grouped["history"].shape[1] < ungrouped["history"].shape[1]
    scores = model.next_item_scores(grouped), model.next_item_scores(ungrouped)[:6]
    torch.testing.assert_close(per_example_ce(scores[0], grouped["target_items"]),
                               per_example_ce(scores[1], grouped["target_items"]), atol=1e-5, rtol=1e-5)


def plain_order_ranking(model, data, task, k: int, batch_size: int) -> torch.Tensor:
    """The reference: consecutive batches in example order, collated per example."""
    rows = [task.rank(model, task.collate([data[i] for i in range(start, min(start + batch_size, len(data)))]), k)
            for start in range(0, len(data), batch_size)]
    return torch.cat(rows)


def test_evaluation_over_length_sorted_batches_ranks_exactly_as_in_example_order():
    sids = catalog(30)
    model = tiny_model(5)
    frame = sid_examples(50, 30, seed=2)
    task = task_for(model, sids, beam_width=6)
    data = task.dataset(model, frame, None)
    reference = plain_order_ranking(model, data, task, 5, 16)
    top, targets = rank_split(model, data, k=5, batch_size=16, task=task)
    assert torch.equal(top, reference)
    assert evaluate(top, targets, (5,)) == evaluate(reference, targets, (5,))


def test_item_model_evaluation_over_length_sorted_batches_ranks_as_in_example_order():
    model = tiny_item_model("sasrec")
    assert "sasrec" in VARIANTS
    frame = sid_examples(50, BASELINE_ITEMS, seed=4)
    task = task_for(model)
    data = task.dataset(model, frame, 8)
    top, _ = rank_split(model, data, k=5, batch_size=16, task=task)
    assert torch.equal(top, plain_order_ranking(model, data, task, 5, 16))
