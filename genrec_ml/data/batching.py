"""Which examples go into which batch: random or length-grouped training orders, length-sorted evaluation.

Histories are short on average and long in the tail (amazon-beauty: mean 6.7 items, max 20), so a
random batch of 256 nearly always holds one 20-item history and pads every other row to it: only
a third of the encoder's positions are real tokens. Grouping examples of similar length into a
batch removes most of that padding without changing what each example contributes:

    shuffle all examples -> cut into mega-batches of `mega_batch_factor * batch_size` -> sort each
    mega-batch by length -> cut into batches -> shuffle the batches

This is HF Trainer's `group_by_length` (`LengthGroupedSampler`, mega-batches of 50 batches), with
one change: HF keeps its batch order and only moves the longest batch first; here the batches
are shuffled too, so an epoch does not walk through the lengths in blocks. Orders are pure
functions of (seed, epoch), which is what makes a mid-epoch resume follow the uninterrupted run.
"""

from __future__ import annotations

import numpy as np

MEGA_BATCH_FACTOR = 50  # HF's LengthGroupedSampler default: batches per mega-batch


def epoch_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool = True,
    mega_batch_factor: int = MEGA_BATCH_FACTOR,
) -> list[np.ndarray]:
    """This epoch's batches as arrays of example indices, every example exactly once.

    `lengths: (E,)` history length of each example. Without `group_by_length` the batches are
    consecutive slices of one random permutation (the plain shuffled order).
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if not group_by_length:
        return _cut(order, batch_size)
    mega = batch_size * mega_batch_factor  # a multiple of batch_size: only the last batch can be short
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        batches += _cut(chunk[np.argsort(-lengths[chunk], kind="stable")], batch_size)
    return [batches[i] for i in rng.permutation(len(batches))]


def shard(batches: list[np.ndarray], rank: int, world_size: int) -> list[np.ndarray]:
    """Rank `rank`'s batches: every `world_size`-th, wrapped around so every rank steps equally often."""
    if world_size == 1:
        return batches
    per_rank = -(-len(batches) // world_size)
    padded = [batches[i % len(batches)] for i in range(per_rank * world_size)]
    return padded[rank::world_size]


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches: examples by descending length, so each batch pads to nearly nothing."""
    return _cut(np.argsort(-np.asarray(lengths), kind="stable"), batch_size)


def padding_share(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of the padded positions over all batches (0 = no padding): what grouping saves."""
    lengths = np.asarray(lengths)
    padded = sum(len(b) * int(lengths[b].max()) for b in batches if len(b))
    return 1.0 - float(lengths.sum()) / max(padded, 1)


def _cut(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
