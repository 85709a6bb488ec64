"""Every Semantic-ID codebook variant on one dataset: CUR, ICR, collision rate and fit time.

    python benchmarks/codebooks.py --dataset amazon-beauty [--variants rq_kmeans rq_vae ...]

Reads item_text_embeddings / propagated_embeddings / cooccurrence_edges of a materialized dataset
from the warehouse (GENREC_WAREHOUSE, default .genrec/warehouse.duckdb) and fits each variant with its
default config, exactly as the `<variant>_codebook` assets do. Prints one row per variant, with the
S²GR paper's ICR on Amazon Beauty beside ours where it reports one.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec_assets.defs.codebooks.assets import VARIANT_INPUTS  # noqa: E402
from genrec_ml import warehouse  # noqa: E402
from genrec_ml.graph.spectral import collaborative_embeddings  # noqa: E402
from genrec_ml.semantic_ids import build_semantic_ids  # noqa: E402

PAPER_ICR_BEAUTY = {"rq_kmeans": 0.8665, "rq_vae": 0.9586, "coba_rqvae": 0.9930}  # S²GR Table 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--variants", nargs="+", default=list(VARIANT_INPUTS))
    parser.add_argument("--warehouse", default=os.environ.get(
        "GENREC_WAREHOUSE", str(Path(__file__).resolve().parents[1] / ".genrec" / "warehouse.duckdb")))
    args = parser.parse_args()
    with warehouse.connect(args.warehouse, read_only=True) as con:
        inputs = {table: warehouse.read_vectors(con, table, args.dataset)[1]
                  for table in set(VARIANT_INPUTS[v] for v in args.variants)}
        edges = warehouse.read_partition(con, "cooccurrence_edges", args.dataset)
        text = warehouse.read_vectors(con, "item_text_embeddings", args.dataset)[1]
    print(f"dataset {args.dataset}: {len(text):,} items")
    print(f"{'variant':<12} {'levels':<14} {'CUR':>10} {'ICR':>8} {'paper ICR':>9} {'collisions':>10} {'fit s':>7}")
    for variant in args.variants:
        collab = collaborative_embeddings(edges, text) if variant == "letter" else None
        started = time.perf_counter()
        result = build_semantic_ids(variant, inputs[VARIANT_INPUTS[variant]], collab=collab, seed=0)
        seconds = time.perf_counter() - started
        u = result.utilization
        paper = PAPER_ICR_BEAUTY.get(variant)
        print(f"{variant:<12} {'x'.join(map(str, result.tokenizer.codebook_sizes)):<14} {u['cur']:>10.2e} "
              f"{u['icr']:>8.4f} {paper if paper else '-':>9} {u['collision_rate']:>10.4f} {seconds:>7.1f}",
              flush=True)


if __name__ == "__main__":
    main()
