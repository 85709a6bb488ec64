"""Checks on LASAR's chains of thought and their anchor states. All block the assets that train on them."""


import great_expectations as gx
import numpy as np
import pandas as pd

from genrec_assets.defs.expectations import partitioned_check, validate, zero_violations
from genrec_assets.defs.resources import Warehouse
from genrec_ml.text.cot import CotConfig
from genrec_ml.warehouse import query, read_partition

MAX_SEGMENTS = CotConfig().max_segments  # the policy head's N_max (LASAR Table 7)


def sql_violations(warehouse: Warehouse, statement: str, dataset: str, what: str):
    """Passes when the SQL file `statement` finds no row for `dataset`; else shows a sample of them."""
    with warehouse.connect(read_only=True) as con:
        bad = query(con, statement, dataset=dataset)
    return zero_violations(len(bad), what, bad)


def cot_texts_cover_training_examples(warehouse: Warehouse, dataset: str):
    """Exactly the scheme's training examples have a chain of thought: none missing, none extra."""
    return sql_violations(warehouse, "check_cot_texts_uncovered", dataset,
                          "training example without a CoT, or a CoT of no training example")


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


def cot_anchor_states_cover_segments(warehouse: Warehouse, dataset: str):
    """Per Stage-1 run, every CoT example has one state per segment (0..S-1), and no state is extra."""
    return sql_violations(warehouse, "check_cot_anchor_states_uncovered", dataset,
                          "example whose anchor states do not match its CoT segments")


def cot_anchor_states_finite(warehouse: Warehouse, dataset: str):
    """Every state is `width` float16 values, all finite, one width for the whole table."""
    with warehouse.connect(read_only=True) as con:
        rows = read_partition(con, "cot_anchor_states", dataset)
    sizes = rows["state"].map(len).to_numpy()
    frame = pd.DataFrame({
        "width": rows["width"], "bytes_match_width": sizes == 2 * rows["width"].to_numpy(),
        "finite": [bool(np.isfinite(np.frombuffer(s, dtype=np.float16)).all()) for s in rows["state"]],
    })
    return validate(frame, [
        gx.expectations.ExpectColumnDistinctValuesToEqualSet(column="width", value_set=[int(rows["width"].iloc[0])]
                                                            if len(rows) else []),
        gx.expectations.ExpectColumnValuesToBeInSet(column="bytes_match_width", value_set=[True]),
        gx.expectations.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
    ], name=f"cot_anchor_states_{dataset}")


ASSET_CHECKS += [partitioned_check("cot_anchor_states", fn, additional_deps=["cot_texts"])
                 for fn in (cot_anchor_states_cover_segments, cot_anchor_states_finite)]
