"""Freed memory kept in the process: a freed large tensor's pages stay resident instead of going back."""

import subprocess
import sys

import pytest

# Resident pages (/proc/self/statm) after a 256 MiB tensor is written and freed, in a fresh process
PROBE = """
import sys, torch
from genrec_ml.train.memory import retain_freed_memory
if sys.argv[1] == "1":
    assert retain_freed_memory()
def resident():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
before = resident()
block = torch.ones(64 * 2**20)
del block
print(resident() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc: Linux only")
def test_a_freed_large_block_stays_resident_only_when_freed_memory_is_kept():
    grown = {retain: float(subprocess.run([sys.executable, "-c", PROBE, str(retain)], capture_output=True, text=True,
                                          check=True).stdout) for retain in (0, 1)}
    assert grown[0] < 32  # glibc's default: a 256 MiB block is mmapped and unmapped when freed
    assert grown[1] > 200  # kept: served from the heap, which is not trimmed
