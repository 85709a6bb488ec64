"""What differs between the two model families the training loop serves.

- `SidTask`: models that generate Semantic IDs (TIGER, S²GR, CARE, ...). Batches come from
  `SequenceDataset` (history SID tokens); ranking is beam search constrained to the catalog's SIDs.
- `ItemTask`: models that score item ids (SASRec, GRU4Rec, Caser, BERT4Rec, ReaRec). Batches
  come from `ItemSequenceDataset`; ranking is a full sort over every catalog item.

A model says which it is with `input_kind` ("sids", the default, or "items"). Both rank the same
examples and hand `(B, K)` item indices to the same metrics, so their numbers are comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from genrec_ml.data.cot_sequences import TEXT_FIELD, CotSequenceDataset, CotTextSequenceDataset
from genrec_ml.data.item_sequences import ItemSequenceDataset, collate_items
from genrec_ml.data.sequences import SequenceDataset, collate
from genrec_ml.decoding import Constraint, Trie
from genrec_ml.errors import GenrecConfigError

INPUT_KINDS = ("sids", "items")


@dataclass
class SidTask:
    sids: Tensor  # (N_items, L) codes of every item, row = item index
    beam_width: int = 20
    trie: Constraint | None = None  # built from `sids` on first use

    collate: ClassVar[Callable] = staticmethod(collate)

    def dataset(self, model: nn.Module, examples: pd.DataFrame, max_history: int | None) -> Dataset:
        # examples with a teacher CoT's supervision attached (LASAR's training split: anchors; the explicit-CoT
        # baseline's: the text, in the model's tokens) carry it into batches
        if TEXT_FIELD in examples.columns:
            return CotTextSequenceDataset(examples, self.sids, model.vocab, max_history, encode=model.encode_texts,
                                          max_tokens=model.config.max_cot_tokens)
        cls = CotSequenceDataset if "n_segments" in examples.columns else SequenceDataset
        return cls(examples, self.sids, model.vocab, max_history)

    def rank(self, model: nn.Module, batch: dict[str, Tensor], k: int) -> Tensor:
        """(B, k) item indices by beam search; -1 where fewer than k SIDs are reachable."""
        if self.trie is None:  # a model that fills positions in any order (REG4Rec) brings its own constraint
            build = getattr(model, "build_constraint", None)
            self.trie = (build(self.sids) if build else Trie.from_sids(self.sids, model.vocab.codebook_sizes)
                         ).to(model.device)
        return model.recommend(batch, self.trie, self.beam_width, k)[0]


@dataclass
class ItemTask:
    n_items: int

    collate: ClassVar[Callable] = staticmethod(collate_items)

    def dataset(self, model: nn.Module, examples: pd.DataFrame, max_history: int | None) -> Dataset:
        return ItemSequenceDataset(examples, self.n_items, max_history)

    def rank(self, model: nn.Module, batch: dict[str, Tensor], k: int) -> Tensor:
        """(B, k) item indices, the k best of a full sort over the catalog."""
        return model.recommend(batch, k)[0]


def task_for(model: nn.Module, sids=None, beam_width: int = 20) -> SidTask | ItemTask:
    """The task of `model`; SID models need the catalog's `sids: (N_items, L)`."""
    kind = getattr(model, "input_kind", "sids")
    if kind not in INPUT_KINDS:
        raise GenrecConfigError("input_kind", f"{type(model).__name__} declares {kind!r}; use one of {INPUT_KINDS}")
    if kind == "items":
        return ItemTask(n_items=model.config.n_items)
    if sids is None:
        raise GenrecConfigError("sids", f"{model.name} generates Semantic IDs: pass the catalog's (N_items, L) SIDs")
    return SidTask(torch.as_tensor(np.asarray(sids), dtype=torch.long), beam_width)
