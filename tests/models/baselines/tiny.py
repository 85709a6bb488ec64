"""Tiny item-id baselines and batches shared by the baseline tests."""

import pandas as pd
import torch
import torch.nn.functional as F

from genrec_ml.data.item_sequences import ItemSequenceDataset, collate_items
from genrec_ml.models.bert4rec import BERT4Rec
from genrec_ml.models.caser import Caser
from genrec_ml.models.gru4rec import GRU4Rec
from genrec_ml.models.rearec import ReaRec
from genrec_ml.models.sasrec import SASRec

N_ITEMS = 12
TRANSFORMER = dict(d_model=16, n_heads=2, n_layers=2, d_ff=32, dropout=0.0)

# test id -> (class, config fields); dropout 0 so that train-mode outputs are deterministic
VARIANTS = {
    "sasrec": (SASRec, TRANSFORMER),
    "sasrec-bce": (SASRec, TRANSFORMER | dict(loss="bce")),
    "gru4rec": (GRU4Rec, dict(d_model=16, d_hidden=16, dropout=0.0)),
    "caser": (Caser, dict(d_model=16, window=3, n_vertical=2, n_horizontal=4, dropout=0.0)),
    "caser-users": (Caser, dict(d_model=16, window=3, n_vertical=2, n_horizontal=4, n_users=8, dropout=0.0)),
    "bert4rec": (BERT4Rec, TRANSFORMER),
    "rearec-erl": (ReaRec, TRANSFORMER | dict(reasoning_steps=2)),
    "rearec-prl": (ReaRec, TRANSFORMER | dict(reasoning_steps=2, variant="prl")),
}
CAUSAL = ["sasrec", "gru4rec", "caser", "rearec-erl"]


def tiny_model(variant: str, seed: int = 0, **overrides):
    cls, fields = VARIANTS[variant]
    torch.manual_seed(seed)
    return cls(cls.config_class(**(dict(n_items=N_ITEMS, max_history=8) | fields | overrides))).eval()


def item_embedding(model) -> torch.nn.Embedding:
    return model.backbone.item_embedding if isinstance(model, ReaRec) else model.item_embedding


def make_batch(histories, targets, users=None) -> dict[str, torch.Tensor]:
    """A collated batch of 0-based `histories` (oldest first) and `targets`."""
    frame = pd.DataFrame({
        "user_index": users if users is not None else list(range(len(histories))),
        "target_item_index": targets,
        "history": histories,
    })
    data = ItemSequenceDataset(frame, N_ITEMS)
    return collate_items([data[i] for i in range(len(data))])


def padded(batch, extra: int) -> dict[str, torch.Tensor]:
    """The same batch with `extra` more padding columns in front."""
    return batch | {"history": F.pad(batch["history"], (extra, 0))}


def counting_batch(n: int, seed: int = 0, max_len: int = 5) -> dict[str, torch.Tensor]:
    """Runs of consecutive items (mod N_ITEMS); the target continues the run: a learnable pattern."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, N_ITEMS, (n,), generator=g).tolist()
    lengths = torch.randint(1, max_len + 1, (n,), generator=g).tolist()
    histories = [[(s + i) % N_ITEMS for i in range(k)] for s, k in zip(starts, lengths, strict=True)]
    targets = [(s + k) % N_ITEMS for s, k in zip(starts, lengths, strict=True)]
    return make_batch(histories, targets, users=[i % 8 for i in range(n)])


BATCH = dict(
    histories=[[3, 4, 5, 6], [1], [7, 2, 9, 0, 11, 5, 8]],
    targets=[7, 2, 10],
    users=[0, 5, 7],
)
