"""Co-occurrence edges: DuckDB SQL (sql/cooccurrence_edges_window.sql) vs a pandas self-join.

    python benchmarks/cooccurrence.py --sizes 1000000 10000000

Each method runs in its own subprocess so peak RSS (max resident memory) is its own. The pandas
reference joins each user's training interactions with themselves (in chunks of users so it fits
in memory), keeps pairs fewer than `window` positions apart, and counts distinct users per pair.
Both results are compared edge for edge. Prints one table, figures side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec_ml import warehouse  # noqa: E402
from genrec_ml.config import CooccurrenceConfig  # noqa: E402
from genrec_ml.graph.cooccurrence import cooccurrence_edges  # noqa: E402

DATASET = "bench"


def synthetic_interactions(n_interactions: int, seed: int = 0) -> pa.Table:
    """Users with ~20 interactions each, Zipf-popular items over a catalog of n/100 items."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 36, size=n_interactions // 20 + 1)
    lengths = lengths[np.cumsum(lengths) <= n_interactions]
    n = int(lengths.sum())
    n_items = max(1000, n_interactions // 100)
    items = (rng.zipf(1.2, size=n) - 1) % n_items
    users = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    positions = np.arange(n) - starts
    return pa.table({"user_index": users, "item_index": items.astype(np.int64),
                     "position": positions.astype(np.int64), "timestamp": positions.astype(np.int64) * 60})


def eval_targets(inter: pa.Table) -> pa.Table:
    """Leave-one-out valid/test rows: all the co-occurrence SQL reads from `splits`."""
    df = inter.select(["user_index", "position"]).to_pandas()
    n = df.groupby("user_index").size()
    n = n[n >= 3]
    users = np.repeat(n.index.to_numpy(), 2)
    positions = np.stack([n.to_numpy() - 2, n.to_numpy() - 1], axis=1).ravel()
    return pa.table({"scheme": ["loo"] * len(users), "split": ["valid", "test"] * len(n),
                     "user_index": users, "target_position": positions})


def run_duckdb(db: Path, window: int, out: Path) -> None:
    with warehouse.connect(db) as con:
        con.execute("SET threads = 2")
        con.execute("SET memory_limit = '3GB'")
        edges = cooccurrence_edges(con, DATASET, CooccurrenceConfig(window=window))
    edges.to_parquet(out)


def run_pandas(db: Path, window: int, out: Path, users_per_chunk: int = 20000) -> None:
    with warehouse.connect(db, read_only=True) as con:
        inter = con.execute("SELECT user_index, item_index, position FROM interactions").df()
        cut = con.execute("SELECT user_index, min(target_position) AS cut FROM splits GROUP BY user_index").df()
    inter = inter.merge(cut, on="user_index", how="left")
    train = inter[inter["cut"].isna() | (inter["position"] < inter["cut"])].drop(columns="cut")
    counts = []
    for start in range(0, int(train["user_index"].max()) + 1, users_per_chunk):
        chunk = train[(train["user_index"] >= start) & (train["user_index"] < start + users_per_chunk)]
        pairs = chunk.merge(chunk, on="user_index", suffixes=("_a", "_b"))
        gap = pairs["position_b"] - pairs["position_a"]
        pairs = pairs[(gap > 0) & (gap < window) & (pairs["item_index_a"] != pairs["item_index_b"])]
        undirected = pd.DataFrame({
            "user_index": pairs["user_index"].to_numpy(),
            "i": np.minimum(pairs["item_index_a"], pairs["item_index_b"]).to_numpy(),
            "j": np.maximum(pairs["item_index_a"], pairs["item_index_b"]).to_numpy()}).drop_duplicates()
        counts.append(undirected.groupby(["i", "j"]).size())
    total = pd.concat(counts).groupby(level=[0, 1]).sum().rename("weight").reset_index()
    both = pd.concat([total.rename(columns={"i": "src_item_index", "j": "dst_item_index"}),
                      total.rename(columns={"j": "src_item_index", "i": "dst_item_index"})])
    both.sort_values(["src_item_index", "dst_item_index"]).reset_index(drop=True).to_parquet(out)


def measure(method: str, db: Path, window: int, out: Path) -> dict:
    """Run one method in a fresh interpreter; wall seconds and peak RSS of that process."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import cooccurrence as b; "
            f"import time, resource, json; t = time.perf_counter(); "
            f"b.run_{method}(b.Path({str(db)!r}), {window}, b.Path({str(out)!r})); "
            f"print(json.dumps({{'seconds': time.perf_counter() - t, "
            f"'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"seconds": float("nan"), "peak_mib": float("nan"), "error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--skip-pandas-above", type=int, default=None,
                        help="run only DuckDB for sizes above this (the reference can take many minutes)")
    args = parser.parse_args()
    print(f"{'interactions':>12} {'edges':>11} {'duckdb s':>9} {'pandas s':>9} {'speed-up':>8} "
          f"{'duckdb MiB':>10} {'pandas MiB':>10}  same edges")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.duckdb"
            inter = synthetic_interactions(size)
            with warehouse.connect(db) as con:
                warehouse.replace_partitions(con, DATASET, {"interactions": inter, "splits": eval_targets(inter)})
            del inter
            duck = measure("duckdb", db, args.window, Path(tmp) / "duck.parquet")
            run_ref = args.skip_pandas_above is None or size <= args.skip_pandas_above
            ref = measure("pandas", db, args.window, Path(tmp) / "ref.parquet") if run_ref else None
            edges = pd.read_parquet(Path(tmp) / "duck.parquet") if "error" not in duck else None
            same = "-"
            if ref and "error" not in ref and edges is not None:
                same = "yes" if edges.reset_index(drop=True).equals(
                    pd.read_parquet(Path(tmp) / "ref.parquet").astype(edges.dtypes.to_dict())) else "NO"
            ref = ref or {"seconds": float("nan"), "peak_mib": float("nan")}
            print(f"{size:>12,} {len(edges) if edges is not None else -1:>11,} {duck['seconds']:>9.1f} "
                  f"{ref['seconds']:>9.1f} {ref['seconds'] / duck['seconds']:>7.1f}x "
                  f"{duck['peak_mib']:>10.0f} {ref['peak_mib']:>10.0f}  {same}", flush=True)
            for name, result in (("duckdb", duck), ("pandas", ref)):
                if "error" in result:
                    print(f"  {name} failed: {result['error']}")


if __name__ == "__main__":
    main()
