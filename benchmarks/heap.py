"""Keep freed memory inside the process, so a timing does not depend on what ran before it.

PyTorch's CPU tensors come from glibc malloc. By default glibc serves large blocks with fresh mmap
pages and gives freed memory back to the kernel, so a decoding loop that allocates its KV cache
anew every step (beam reorder, cache append) pays a page fault per 4 KiB touched; how much depends
on how far earlier work happened to grow the heap. Measured in `benchmarks/method_cost.py` (one
thread, amazon-beauty-sized catalog, 256 users, beam 20): the explicit-CoT model decoded 3-4x faster
right after its own training than untrained, because training on long CoT sequences had grown the
heap, while MiniOneRec's shorter training left it small; the cache copies (`index_select`,
`torch.cat`) took 6.5 of 11.6 s cold and 0.8 of 3.5 s warm. With these settings, and one full-size
warm-up pass, every model decodes in the warm regime (a long-running ranking job's steady state).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters (malloc.h)


def retain_freed_memory() -> bool:
    """Serve large blocks from the heap and never trim it (glibc only); True when glibc took the settings."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to set
        return False
    settings = ((M_MMAP_THRESHOLD, 1 << 30), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 1 << 28))
    return all(mallopt(option, value) == 1 for option, value in settings)
