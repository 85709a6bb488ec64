"""Keep freed memory inside the process, so decoding does not page-fault on every step.

PyTorch's CPU tensors come from glibc malloc. By default glibc serves large blocks with fresh mmap
pages and gives freed memory back to the kernel, so a beam search that allocates its KV cache anew
every step (beam reorder, cache append) pays a page fault per 4 KiB it touches, and how much depends
on how far earlier work happened to grow the heap. With large blocks served from a heap that is never
trimmed, each step reuses the pages the previous one freed. Measured by `benchmarks/heap.py` (fresh
processes, one thread, `cpu` models on a Beauty-sized catalog, 10 training steps then ranking): the
steady-state ranking of MiniOneRec 1.81x and of LASAR (N = 4) 1.57x as fast as with glibc's defaults,
TIGER's the same (1.01x), training 5-11 % faster. The cost: the process keeps its peak memory until it
exits, which a training or ranking process reaches anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters (malloc.h)
SETTINGS = ((M_MMAP_THRESHOLD, 1 << 30), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 1 << 28))


@functools.cache
def retain_freed_memory() -> bool:
    """Serve blocks below 1 GiB from the heap and never trim it, for the rest of this process (glibc only;
    once per process); True when glibc took the settings, False where there is no glibc (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(option, value) == 1 for option, value in SETTINGS)
