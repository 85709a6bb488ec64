import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Dataset partitions are discovered when genrec_assets is imported: point discovery at the real
# datasets (when present) before any test imports it.
if SHARED_DATA.is_dir():
    os.environ.setdefault("GENREC_DATA_ROOT", str(SHARED_DATA))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Two OpenMP threads on two cores shared with other jobs spin against each other; one is faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
