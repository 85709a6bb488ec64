"""A synthetic catalogue and user histories with the structure generative recommenders exploit.

Items sit in the leaves of a category tree. Titles and descriptions are drawn from pseudo-word
vocabularies owned by each category node, so items of one leaf share words and siblings share their
parent's words: text embeddings carry the hierarchy. Item popularity follows a power law. Each user
follows one leaf at a time and drifts, mostly to sibling leaves, over their history.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrec_ml.data.raw import RawDataset, interactions_frame, items_frame
from genrec_ml.errors import GenrecConfigError

_ONSETS = "b d f g k l m n p r s t v z br st tr kl".split()
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_SYLLABLES = [onset + vowel for onset in _ONSETS for vowel in _VOWELS]
_GOLDEN = (math.sqrt(5) - 1) / 2  # step of the low-discrepancy sequence used to pick within a leaf
_START = 1_600_000_000  # first possible timestamp (2020-09-13); users start within a year of it


@dataclass(frozen=True)
class SyntheticConfig:
    seed: int = 0  # the only source of randomness: the same config gives identical tables
    n_items: int = 5000
    n_users: int = 3000
    # children per level, coarse to fine: 8 roots x 4 subcategories x 4 leaves = 128 leaves
    branching: tuple[int, ...] = (8, 4, 4)
    min_history: int = 6  # interactions per user, uniform in [min_history, max_history]
    max_history: int = 40
    popularity_exponent: float = 1.1  # Zipf exponent over popularity ranks, spread over items
    popularity_floor: float = 0.45  # popularity share spread evenly: keeps the tail past a 5-core
    interest_drift: float = 0.15  # chance per step that the user's interest moves to a new leaf
    sibling_drift: float = 0.6  # share of those moves that stay under the same parent category
    exploration: float = 0.1  # chance per step of one off-interest item, by global popularity
    vocabulary_size: int = 20  # pseudo-words owned by each category node (and by the shared filler)
    title_words: int = 5
    description_words: int = 18
    mean_gap_s: int = 86_400  # mean seconds between a user's consecutive interactions

    def __post_init__(self):
        if len(self.branching) < 1 or min(self.branching) < 1:
            raise GenrecConfigError(
                "branching", f"needs >= 1 level of >= 1 child, got {self.branching}"
            )
        for name in ("n_users", "min_history", "vocabulary_size", "title_words"):
            if getattr(self, name) < 1:
                raise GenrecConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.max_history < self.min_history:
            raise GenrecConfigError(
                "max_history",
                f"must be >= min_history ({self.min_history}), got {self.max_history}",
            )
        leaves = math.prod(self.branching)
        if self.n_items < max(leaves, self.max_history):
            raise GenrecConfigError(
                "n_items",
                f"must be >= the {leaves} leaf categories (one item each) and >= max_history "
                f"({self.max_history}, distinct items per user), got {self.n_items}",
            )
        for name in ("popularity_floor", "interest_drift", "sibling_drift", "exploration"):
            if not 0 <= getattr(self, name) <= 1:
                raise GenrecConfigError(
                    name, f"is a probability in [0, 1], got {getattr(self, name)}"
                )
        for name in ("popularity_exponent", "description_words", "mean_gap_s"):
            if getattr(self, name) < 0:
                raise GenrecConfigError(name, f"must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class _Tree:
    """Category nodes numbered level by level; a leaf's path lists its node at every level."""

    branching: tuple[int, ...]

    @property
    def n_leaves(self) -> int:
        return math.prod(self.branching)

    @property
    def n_nodes(self) -> int:
        return sum(math.prod(self.branching[: level + 1]) for level in range(len(self.branching)))

    def paths(self) -> np.ndarray:  # (n_leaves, depth) node ids, root first
        leaves = np.arange(self.n_leaves)
        columns, offset = [], 0
        for level in range(len(self.branching)):
            below = math.prod(self.branching[level + 1 :])
            columns.append(offset + leaves // below)
            offset += math.prod(self.branching[: level + 1])
        return np.stack(columns, axis=1)


def generate_synthetic(config: SyntheticConfig) -> RawDataset:
    rng = np.random.default_rng(config.seed)
    tree = _Tree(tuple(config.branching))
    # Leaves get equal shares of items; popularity ranks are spread over items independently.
    leaf_of_item = rng.permutation(np.arange(config.n_items) % tree.n_leaves)
    ranks = rng.permutation(config.n_items) + 1
    zipf = ranks ** -float(config.popularity_exponent)
    popularity = (1 - config.popularity_floor) * zipf / zipf.sum()
    popularity += config.popularity_floor / config.n_items
    items = _items(config, tree, leaf_of_item, rng)
    interactions = _interactions(config, tree, leaf_of_item, popularity, rng)
    return RawDataset(interactions=interactions, items=items, report={})


# --- items -----------------------------------------------------------------------------------


def _items(config: SyntheticConfig, tree: _Tree, leaf_of_item: np.ndarray, rng) -> pd.DataFrame:
    words = np.array(
        _pseudo_words(rng, tree.n_nodes * (config.vocabulary_size + 1) + config.vocabulary_size)
    )
    names = np.char.capitalize(words[: tree.n_nodes].astype(str)).astype(object)
    # (n_nodes + 1, vocabulary_size): one row per node, the last row is filler shared by everyone
    vocabulary = words[tree.n_nodes :].reshape(tree.n_nodes + 1, config.vocabulary_size)
    paths = tree.paths()[leaf_of_item]  # (n_items, depth)
    depth = len(tree.branching)
    deeper_first = np.arange(1, depth + 1, dtype=float)  # finer levels own more of each text
    titles = _texts(rng, paths, vocabulary, config.title_words, deeper_first)
    with_filler = np.append(deeper_first, depth)  # descriptions also use the shared filler row
    descriptions = _texts(rng, paths, vocabulary, config.description_words, with_filler)
    return items_frame(
        _ids("i", config.n_items),
        [title.capitalize() for title in titles],
        descriptions,
        names[paths].tolist(),
        "synthetic",
        np.arange(config.n_items) + 1,
    )


def _texts(
    rng, paths: np.ndarray, vocabulary: np.ndarray, n_words: int, level_weights
) -> list[str]:
    """n_words per item, each from the vocabulary of the item's node at a random level."""
    n_items = len(paths)
    levels = rng.choice(
        len(level_weights), size=(n_items, n_words), p=level_weights / level_weights.sum()
    )
    # (n_items, depth + 1): level `depth` stands for the filler row, the last of the vocabulary
    padded = np.concatenate([paths, np.full((n_items, 1), len(vocabulary) - 1)], axis=1)
    nodes = np.take_along_axis(padded, levels, axis=1)  # (n_items, n_words)
    words = vocabulary[nodes, rng.integers(vocabulary.shape[1], size=nodes.shape)]
    return [" ".join(row) for row in words]


def _pseudo_words(rng, count: int) -> list[str]:
    """count distinct pronounceable words of 2 or 3 syllables."""
    words: dict[str, None] = {}
    while len(words) < count:
        lengths = rng.integers(2, 4, size=count)
        syllables = rng.integers(len(_SYLLABLES), size=(count, 3))
        for length, row in zip(lengths, syllables, strict=True):
            words.setdefault("".join(_SYLLABLES[s] for s in row[:length]))
    return list(words)[:count]


# --- interactions ----------------------------------------------------------------------------


def _interactions(
    config: SyntheticConfig, tree: _Tree, leaf_of_item, popularity, rng
) -> pd.DataFrame:
    lengths = rng.integers(config.min_history, config.max_history + 1, size=config.n_users)
    chosen = _Chooser(tree, leaf_of_item, popularity, rng).histories(config, lengths, rng)
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths  # row of each user's first step
    gaps = 1 + np.floor(rng.exponential(config.mean_gap_s, size=total)).astype(np.int64)
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[offsets] - gaps[offsets], lengths)  # each user's clock from 0
    starts = _START + rng.integers(0, 365 * 86_400, size=config.n_users)
    users = np.repeat(np.arange(config.n_users), lengths)
    return interactions_frame(
        np.asarray(_ids("u", config.n_users), dtype=object)[users],
        np.asarray(_ids("i", config.n_items), dtype=object)[chosen],
        starts[users] + elapsed,
        np.arange(total) - np.repeat(offsets, lengths),
        "synthetic",
        np.arange(total) + 1,
    )


class _Chooser:
    """Walks each user's interest over the leaves and picks distinct items in them.

    Leaves are chosen in proportion to their total popularity (for starts, jumps and exploration;
    sibling moves too, within the parent), so that in the long run every item is picked in
    proportion to its popularity. Within a leaf, items are picked along a low-discrepancy sequence
    instead of independent draws: item counts then track popularity closely, which keeps ~14
    interactions per item on average enough for almost every item to pass a 5-core filter.
    """

    def __init__(self, tree: _Tree, leaf_of_item, popularity, rng):
        self.siblings = tree.branching[-1]
        order = np.argsort(leaf_of_item, kind="stable")
        bounds = np.searchsorted(leaf_of_item[order], np.arange(tree.n_leaves + 1))
        self.leaf_items = [
            order[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        self.item_cdfs = [np.cumsum(popularity[items]).tolist() for items in self.leaf_items]
        leaf_weight = np.array([cdf[-1] for cdf in self.item_cdfs])
        self.leaf_cdf = np.cumsum(leaf_weight).tolist()
        self.sibling_cdfs = [
            np.cumsum(leaf_weight[start : start + self.siblings]).tolist()
            for start in range(0, tree.n_leaves, self.siblings)
        ]
        self.phase = rng.random(tree.n_leaves).tolist()

    def histories(self, config: SyntheticConfig, lengths: np.ndarray, rng) -> np.ndarray:
        """Item index of every step, users one after another."""
        draws = rng.random((5, int(lengths.sum()))).tolist()
        moves, sibling, jump, explore, explore_leaf = draws
        chosen, step = [], 0
        for length in lengths.tolist():
            seen: set[int] = set()
            leaf = self._any_leaf(jump[step])
            for k in range(length):
                if k > 0 and moves[step] < config.interest_drift:
                    if sibling[step] < config.sibling_drift:
                        leaf = self._sibling_leaf(leaf, jump[step])
                    else:
                        leaf = self._any_leaf(jump[step])
                exploring = explore[step] < config.exploration
                target = self._any_leaf(explore_leaf[step]) if exploring else leaf
                item = self._unseen_item(target, seen)
                while item is None:  # the user has seen the whole leaf: take a fresh one
                    target = self._any_leaf(rng.random())
                    item = self._unseen_item(target, seen)
                    if not exploring:
                        leaf = target
                seen.add(item)
                chosen.append(item)
                step += 1
        return np.array(chosen, dtype=np.int64)

    def _any_leaf(self, u: float) -> int:
        return _pick(self.leaf_cdf, u)

    def _sibling_leaf(self, leaf: int, u: float) -> int:
        group = leaf // self.siblings
        return group * self.siblings + _pick(self.sibling_cdfs[group], u)

    def _unseen_item(self, leaf: int, seen: set[int]) -> int | None:
        self.phase[leaf] = (self.phase[leaf] + _GOLDEN) % 1.0
        items = self.leaf_items[leaf]
        start = _pick(self.item_cdfs[leaf], self.phase[leaf])
        for offset in range(len(items)):
            item = items[(start + offset) % len(items)]
            if item not in seen:
                return item
        return None


def _pick(cdf: list[float], u: float) -> int:
    """Index drawn in proportion to the weights behind cdf, for u uniform in [0, 1)."""
    return min(bisect_right(cdf, u * cdf[-1]), len(cdf) - 1)


def _ids(prefix: str, n: int) -> list[str]:
    width = len(str(n - 1))
    return [f"{prefix}{index:0{width}d}" for index in range(n)]
