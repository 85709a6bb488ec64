"""Session fixtures: tiny clustered items and one fitted tiny tokenizer per registry name."""

from __future__ import annotations

import numpy as np
import pytest

from genrec_ml.tokenizers import TOKENIZERS
from tests.tokenizers.tiny import DIM, clustered, tiny_tokenizer


@pytest.fixture(scope="session")
def items() -> np.ndarray:
    return clustered()


@pytest.fixture(scope="session")
def collab(items) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (items @ rng.normal(size=(DIM, 6))).astype(np.float32)


@pytest.fixture(scope="session")
def fitted(items, collab):
    """One fitted tiny tokenizer per registry name, shared by the read-only tests."""
    tokenizers = {}
    for name in TOKENIZERS:
        tokenizer = tiny_tokenizer(name)
        tokenizer.fit(items, collab=collab)
        tokenizers[name] = tokenizer
    return tokenizers
