"""Tiny REG4Rec models over catalogs of unordered token sets, shared by the decoding and model tests."""

import itertools

import torch

from genrec_ml.models.reg4rec import Reg4Rec, Reg4RecConfig

SIZES = (3, 4, 3, 2)  # M = 3 free codebooks, then the disambiguation level


def set_catalog(n_items: int, seed: int = 0) -> torch.Tensor:
    """(N, 4) distinct token sets; a few share their 3 codes and differ in the disambiguation code."""
    every = list(itertools.product(*[range(k) for k in SIZES[:3]]))
    pick = torch.randperm(len(every), generator=torch.Generator().manual_seed(seed))[: n_items - 2]
    sids = [list(every[i]) + [0] for i in pick]
    sids += [sids[0][:3] + [1], sids[1][:3] + [1]]  # two collisions, told apart by the last code
    return torch.tensor(sids)


def tiny_reg4rec(n_items: int, seed: int = 0, **overrides) -> Reg4Rec:
    torch.manual_seed(seed)
    config = Reg4RecConfig(codebook_sizes=SIZES, n_user_buckets=5, d_model=16, n_heads=2, d_kv=8, d_ff=32,
                           n_items=n_items, n_categories=3, dropout=0.0, **overrides)
    model = Reg4Rec(config).eval()
    model.set_item_categories(torch.randint(0, 3, (n_items,), generator=torch.Generator().manual_seed(seed)))
    return model


def batch(model: Reg4Rec, users: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, model.vocab.size, (users, 9), generator=g)
    mask = torch.ones(users, 9, dtype=torch.bool)
    mask[1:, 6:] = False
    return {"input_ids": ids.masked_fill(~mask, 0), "attention_mask": mask}
