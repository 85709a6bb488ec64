"""Reading a large generic CSV dataset: genrec's reader (checks, source lines) vs a bare pandas.read_csv.

    python benchmarks/readers.py --rows 200000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from genrec_ml.data.readers import read_generic


def write_dataset(folder: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(rows // 10), 10)
    pd.DataFrame({"user_id": [f"user{u}" for u in users],
                  "item_id": [f"item{i}" for i in rng.integers(0, 20_000, len(users))],
                  "position": np.tile(np.arange(10), rows // 10),
                  "elapsed_s": rng.integers(0, 10**8, len(users))}).to_csv(folder / "interactions.csv", index=False)
    pd.DataFrame({"item_id": [f"item{i}" for i in range(20_000)], "title": "t"}).to_csv(folder / "items.csv",
                                                                                       index=False)


def best_seconds(read, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_dataset(folder, args.rows)
        ours = best_seconds(lambda: read_generic(folder), args.repeats)
        bare = best_seconds(lambda: (pd.read_csv(folder / "interactions.csv"), pd.read_csv(folder / "items.csv")),
                            args.repeats)
    print(f"{args.rows} interactions, best of {args.repeats}")
    print(f"{'genrec read_generic':>22} {ours:>7.2f} s   {args.rows / ours:>12,.0f} rows/s")
    print(f"{'pandas.read_csv':>22} {bare:>7.2f} s   {args.rows / bare:>12,.0f} rows/s   ({ours / bare:.1f}x)")


if __name__ == "__main__":
    main()
