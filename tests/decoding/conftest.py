"""Tiny random catalogs shared by the decoding tests."""

import pytest
import torch


def random_catalog(seed: int, codebook_sizes: tuple[int, ...], n_items: int) -> torch.Tensor:
    """Distinct random SIDs (N, L); few codes per level, so prefixes are shared."""
    g = torch.Generator().manual_seed(seed)
    flat = torch.randperm(int(torch.tensor(codebook_sizes).prod()), generator=g)[:n_items]
    codes = []
    for k in reversed(codebook_sizes):  # mixed-radix digits, last level fastest
        codes.append(flat % k)
        flat = flat // k
    return torch.stack(codes[::-1], dim=1)  # (N, L)


@pytest.fixture
def make_catalog():
    return random_catalog
