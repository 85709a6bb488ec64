"""Teacher chains of thought for LASAR (§2.3, appendix E.2) and their semantic segmentation.

LASAR aligns each latent step to one segment of a teacher CoT and labels the policy head with the
segment count. The paper's teacher is GPT-5 following GREAM's 5-stage chain (behavioral evidence
-> latent preferences -> intent -> recommendation -> denoised sequence rewriting), segmented with
bge-small-en-v1.5. genrec takes the CoT from a JSONL file a user supplies (any LLM), or, by default,
writes it with a deterministic template from item metadata (no LLM offline), one sentence or more
per stage:

- evidence: one sentence per leading label of the history (up to `max_evidence`; more diverse
  histories get more), with its count;
- preferences: the recency-weighted (decay `recency_decay` per step back) leading label and the
  latest item;
- intent: the label the target is expected to carry, continuing or leaving the last item's;
- recommendation: the target's title (the teacher sees the target, as GPT-5 did: the CoT is only
  alignment supervision, never an input at inference);
- denoised history: for histories of at least `long_history` items, how many items share a label
  with the target (the rest is noise for this intent).

A label is one of an item's categories (amazon-beauty: its attribute ids, named `attribute <id>`
because the copy has no names). Segmentation (the paper names only the model): split into
sentences, embed each, and cut between consecutive sentences whose cosine distance exceeds
`breakpoint_distance` (the "semantic chunking" rule of LangChain's SemanticChunker, with an absolute
threshold so that the count means something across examples); above `max_segments` (N_max = 8) only
the widest gaps are cut. Identical sentences are embedded once.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genrec_ml.errors import GenrecConfigError, GenrecDataError

TEACHERS = ("template", "jsonl")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class CotConfig:
    teacher: str = "template"  # or "jsonl": read `path`
    path: str | None = None  # JSONL rows {"user_index" or "user_id", "target_position", "cot"}
    segmenter_model: str = "all-MiniLM-L6-v2"  # sentence-transformers name or local path (paper: bge-small-en-v1.5)
    # cut where 1 - cos(sentence i, sentence i+1) exceeds this; on 772 amazon-beauty training examples
    # (all-MiniLM-L6-v2) the template's counts hardly move over 0.3-0.5 (mean 4.31-4.30 segments),
    # while 0.7 starts merging stages (3.44): 0.5 is the plateau's upper end
    breakpoint_distance: float = 0.5
    max_segments: int = 8  # N_max, the policy head's output size (LASAR Table 7)
    max_evidence: int = 4  # evidence sentences at most: one per leading label of the history
    long_history: int = 8  # histories this long also get the denoised-history stage
    recency_decay: float = 0.8  # weight of the item k steps before the last: decay ** k

    def __post_init__(self):
        if self.teacher not in TEACHERS:
            raise GenrecConfigError("teacher", f"must be one of {TEACHERS}, got {self.teacher!r}")
        if self.teacher == "jsonl" and not self.path:
            raise GenrecConfigError("path", "the jsonl teacher needs the path of a JSONL file")
        if not 0.0 <= self.breakpoint_distance <= 2.0:
            raise GenrecConfigError("breakpoint_distance", f"must lie in [0, 2], got {self.breakpoint_distance}")
        for name in ("max_segments", "max_evidence", "long_history"):
            if getattr(self, name) < 1:
                raise GenrecConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.recency_decay <= 1.0:
            raise GenrecConfigError("recency_decay", f"must lie in (0, 1], got {self.recency_decay}")


@dataclass(frozen=True)
class ItemFacts:
    """What the template teacher knows of each item (row = item index)."""
    titles: list[str]
    labels: list[list[str]]  # an item's category labels, most general first

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> ItemFacts:
        """From the `items` table (item_index, title, categories); numeric categories become `attribute <id>`."""
        items = items.sort_values("item_index")
        if not np.array_equal(items["item_index"].to_numpy(), np.arange(len(items))):
            raise GenrecDataError("items do not cover item_index 0..N-1", field="item_index")
        labels = [[_label(c) for c in ([] if cats is None else list(cats)) if str(c).strip()]
                  for cats in items["categories"]]
        titles = [str(t).strip() or f"item {i}" for i, t in zip(items["item_index"], items["title"], strict=True)]
        return cls(titles=titles, labels=labels)


def _label(category) -> str:
    name = str(category).strip()
    return f"attribute {name}" if name.isdigit() else name


def template_cot(history: Sequence[int], target: int, facts: ItemFacts, config: CotConfig) -> list[str]:
    """The template teacher's sentences for one example (history oldest first)."""
    n = len(history)
    if n == 0:
        raise GenrecDataError("an example with an empty history has no chain of thought", field="history")
    weight = {}  # recency-weighted label counts
    count = Counter()
    for k, item in enumerate(history):
        for label in facts.labels[item]:
            weight[label] = weight.get(label, 0.0) + config.recency_decay ** (n - 1 - k)
            count[label] += 1
    ranked = sorted(weight, key=lambda label: (-weight[label], label))  # ties: by name
    last = history[-1]
    # Few distinct sentences (labels and counts; titles only where one item is named), so that
    # embedding a whole dataset's CoTs for segmentation stays cheap: each distinct one is embedded once.
    sentences = [f"Evidence: {count[label]} of the {n} items carry {label}." for label in ranked[:config.max_evidence]]
    if not ranked:
        sentences.append(f"Evidence: the {n} items carry no category labels.")
    lead = ranked[0] if ranked else "no label"
    sentences.append(f"Preference: {lead} leads the recent choices, the latest being {facts.titles[last]}.")
    target_labels = facts.labels[target]
    known = [label for label in target_labels if label in weight]
    expected = min(known, key=lambda label: (-weight[label], label)) if known else (
        target_labels[0] if target_labels else "a new kind")
    last_label = facts.labels[last][0] if facts.labels[last] else "no label"
    move = "continuing" if expected in facts.labels[last] else "moving on from"
    sentences.append(f"Intent: the next item likely carries {expected}, {move} {last_label}.")
    sentences.append(f"Recommendation: an item like {facts.titles[target]}.")
    if n >= config.long_history:
        relevant = sum(bool(set(facts.labels[item]) & set(target_labels)) for item in history)
        sentences.append(f"Relevant history: {relevant} of the {n} items share a label with the target; "
                         f"the others are noise for this intent.")
    return sentences


def template_words(config: CotConfig | None = None) -> list[str]:
    """Every word the template teacher writes besides the items' titles and labels (its fixed phrases), by
    writing its sentences for label-free placeholder items in each of its branches."""
    from genrec_ml.text.prompt import pieces

    config = config or CotConfig()
    facts = ItemFacts(titles=["", ""], labels=[[_label("1")], []])  # "attribute 1": a label the copy spells
    long = config.long_history
    sentences = [*template_cot([0] * long, 1, facts, config), *template_cot([1], 0, facts, config),
                 *template_cot([0], 0, facts, config)]
    words = [p for s in sentences for p in pieces(s) if p[0].isalpha()]
    return list(dict.fromkeys(words))


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def segment_boundaries(vectors: np.ndarray, config: CotConfig) -> list[int]:
    """Indices i after which a segment ends (sentence i | sentence i+1), ascending.

    `vectors (S, D)`: the sentences' embeddings. Plain rule: cut where the cosine distance between
    neighbours exceeds the threshold; keep only the `max_segments - 1` widest such gaps.
    """
    if len(vectors) < 2:
        return []
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    distance = 1.0 - (unit[:-1] * unit[1:]).sum(axis=1)  # (S - 1,)
    gaps = [i for i in range(len(distance)) if distance[i] > config.breakpoint_distance]
    gaps = sorted(gaps, key=lambda i: (-distance[i], i))[: config.max_segments - 1]
    return sorted(gaps)


def join_segments(sentences: Sequence[str], boundaries: Sequence[int]) -> list[str]:
    cuts = [0, *(b + 1 for b in boundaries), len(sentences)]
    return [" ".join(sentences[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]


Encode = Callable[[list[str]], np.ndarray]  # texts -> (len, D) embeddings


def segment_texts(sentence_lists: Sequence[Sequence[str]], encode: Encode, config: CotConfig) -> list[list[str]]:
    """Segments of every text; each distinct sentence is embedded once."""
    distinct = sorted({s for sentences in sentence_lists for s in sentences})
    row = {s: i for i, s in enumerate(distinct)}
    vectors = encode(distinct) if distinct else np.zeros((0, 1), np.float32)
    return [join_segments(sentences, segment_boundaries(vectors[[row[s] for s in sentences]], config))
            for sentences in sentence_lists]


def read_cot_jsonl(path: str | Path, examples: pd.DataFrame, user_ids: Sequence[str] | None = None) -> list[str]:
    """The CoT text of every example (user_index, target_position) from a JSONL file.

    A row names its user by `user_index` or by `user_id` (then `user_ids[user_index]` maps them).
    Errors name the file and line; an example without a row is an error too (none is skipped).
    """
    path = Path(path)
    if not path.is_file():
        raise GenrecDataError(f"{path}: no such CoT file", field="path")
    by_user_id = {u: i for i, u in enumerate(user_ids)} if user_ids is not None else {}
    texts: dict[tuple[int, int], str] = {}
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}, line {line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise GenrecDataError(f"{where}: not JSON ({err.msg})", field="cot") from err
            if not isinstance(row, dict):
                raise GenrecDataError(f"{where}: a row must be a JSON object", field="cot")
            if not isinstance(row.get("cot"), str) or not row["cot"].strip():
                raise GenrecDataError(f"{where}: needs a non-empty string `cot`", field="cot")
            if "user_index" in row:
                user = row["user_index"]
            elif "user_id" in row and str(row["user_id"]) in by_user_id:
                user = by_user_id[str(row["user_id"])]
            else:
                raise GenrecDataError(f"{where}: needs `user_index` or a known `user_id`", field="user_id")
            if not isinstance(user, int) or not isinstance(row.get("target_position"), int):
                raise GenrecDataError(f"{where}: `user_index` and `target_position` must be integers",
                                      field="target_position")
            texts[(user, row["target_position"])] = row["cot"]
    keys = list(zip(examples["user_index"].astype(int), examples["target_position"].astype(int), strict=True))
    missing = [key for key in keys if key not in texts]
    if missing:
        raise GenrecDataError(f"{path}: {len(missing)} of {len(keys)} training examples have no CoT, e.g. "
                              f"user_index {missing[0][0]}, target_position {missing[0][1]}", field="cot")
    return [texts[key] for key in keys]


COT_COLUMNS = ["user_index", "target_position", "history_length", "label_diversity", "n_segments", "segments"]


def build_cot_texts(examples: pd.DataFrame, facts: ItemFacts, config: CotConfig, encode: Encode,
                    user_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per training example: its CoT segments (the policy head's label is their count).

    `examples`: rows of `splits` (user_index, target_position, target_item_index, history).
    """
    histories = [list(map(int, h)) for h in examples["history"]]
    if config.teacher == "template":
        sentence_lists = [template_cot(h, int(t), facts, config)
                          for h, t in zip(histories, examples["target_item_index"], strict=True)]
    else:
        sentence_lists = [split_sentences(text) for text in read_cot_jsonl(config.path, examples, user_ids)]
    segments = segment_texts(sentence_lists, encode, config)
    return pd.DataFrame({
        "user_index": examples["user_index"].astype("int64").to_numpy(),
        "target_position": examples["target_position"].astype("int64").to_numpy(),
        "history_length": [len(h) for h in histories],
        "label_diversity": [len({label for item in h for label in facts.labels[item]}) for h in histories],
        "n_segments": [len(s) for s in segments],
        "segments": segments,
    }, columns=COT_COLUMNS)
