"""Tiny TIGER models, catalogs and examples shared by the model and training tests."""

import itertools

import numpy as np
import pandas as pd
import torch

from genrec_ml.models.tiger import Tiger, tiger_config

SIZES = (3, 4, 3)  # tiny codebooks: prefixes are shared, so beam pruning matters


def tiny_model(seed: int = 0, cls=Tiger, **overrides) -> Tiger:
    torch.manual_seed(seed)
    fields = dict(n_user_buckets=5, d_model=16, n_heads=2, d_kv=8, d_ff=32, n_encoder_layers=1,
                  n_decoder_layers=2, dropout=0.0)
    return cls(tiger_config("smoke", SIZES, **(fields | overrides))).eval()


def catalog(n_items: int, seed: int = 0, sizes=SIZES) -> torch.Tensor:
    """(N, L) distinct SIDs drawn from every code combination."""
    every = torch.tensor(list(itertools.product(*[range(k) for k in sizes])))
    return every[torch.randperm(len(every), generator=torch.Generator().manual_seed(seed))[:n_items]]


def examples(n: int, n_items: int, seed: int = 0, max_len: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    histories = [rng.integers(0, n_items, rng.integers(1, max_len + 1)).tolist() for _ in range(n)]
    return pd.DataFrame({
        "scheme": "loo", "split": "train", "user_index": np.arange(n) * 7,
        "target_item_index": rng.integers(0, n_items, n), "history": histories,
    })
