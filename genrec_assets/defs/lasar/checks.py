"""Checks on LASAR's chains of thought. Both block the assets that train on them."""


import great_expectations as gx
import pandas as pd

from genrec_assets.defs.expectations import partitioned_check, validate, zero_violations
from genrec_assets.defs.resources import Warehouse
from genrec_ml.text.cot import CotConfig
from genrec_ml.warehouse import query, read_partition

MAX_SEGMENTS = CotConfig().max_segments  # the policy head's N_max (LASAR Table 7)


def cot_texts_cover_training_examples(warehouse: Warehouse, dataset: str):
    """Exactly the scheme's training examples have a chain of thought: none missing, none extra."""
    with warehouse.connect(read_only=True) as con:
        bad = query(con, "check_cot_texts_uncovered", dataset=dataset)
    return zero_violations(len(bad), "training example without a CoT, or a CoT of no training example", bad)


def cot_texts_segments_valid(warehouse: Warehouse, dataset: str):
    """1..N_max non-empty segments per example, n_segments their count, one row per example."""
    with warehouse.connect(read_only=True) as con:
        cot = read_partition(con, "cot_texts", dataset)
    frame = pd.DataFrame({
        "user_index": cot["user_index"], "target_position": cot["target_position"],
        "n_segments": cot["n_segments"],
        "count_matches": [len(s) == n for s, n in zip(cot["segments"], cot["n_segments"], strict=True)],
        "segments_non_empty": [all(str(x).strip() for x in s) for s in cot["segments"]],
    })
    return validate(frame, [
        gx.expectations.ExpectColumnValuesToBeBetween(column="n_segments", min_value=1, max_value=MAX_SEGMENTS),
        gx.expectations.ExpectColumnValuesToBeInSet(column="count_matches", value_set=[True]),
        gx.expectations.ExpectColumnValuesToBeInSet(column="segments_non_empty", value_set=[True]),
        gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["user_index", "target_position"]),
    ], name=f"cot_texts_{dataset}")


ASSET_CHECKS = [partitioned_check("cot_texts", fn, additional_deps=["splits"])
                for fn in (cot_texts_cover_training_examples, cot_texts_segments_valid)]
