"""Checks on the data assets. Blocking ones stop downstream assets in the same run when they fail
with severity ERROR; `items_texts_distinct` fails with WARN unless configured to block."""


import dagster as dg
import great_expectations as gx

from genrec_assets.defs.expectations import partitioned_check, validate, zero_violations
from genrec_assets.defs.partitions import dataset_partitions
from genrec_assets.defs.resources import Warehouse
from genrec_ml.warehouse import item_count, query, read_partition

_SHOWN_TEXTS = 10  # most common texts listed in the check's metadata


class ItemsTextsDistinctConfig(dg.Config):
    # Items sharing one text get one embedding and, after disambiguation, near-identical Semantic
    # IDs: more than 1% of the catalog on one text means the text fields held no names (a title
    # that cleaning could not replace), which is worth a look but not always a stop...
    max_share: float = 0.01
    # ...and small catalogs may have a few real duplicates (variants) even when 1% is one item.
    min_items: int = 5
    blocking: bool = False  # True: a failure is an ERROR and stops the embeddings downstream


def _sql_check(warehouse: Warehouse, name: str, dataset: str, rule: str) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        bad = query(con, name, dataset=dataset)
    return zero_violations(len(bad), rule, bad)


def interactions_ids_valid(warehouse: Warehouse, dataset: str) -> dg.AssetCheckResult:
    """Ids and indices non-null; (user, position) unique."""
    with warehouse.connect(read_only=True) as con:
        df = read_partition(con, "interactions", dataset)
    return validate(df, [
        *[gx.expectations.ExpectColumnValuesToNotBeNull(column=c)
          for c in ("user_id", "item_id", "user_index", "item_index", "position")],
        gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["user_index", "position"]),
        gx.expectations.ExpectColumnValuesToBeBetween(column="position", min_value=0),
    ], name="interactions_ids_valid")


def interactions_items_exist(warehouse: Warehouse, dataset: str) -> dg.AssetCheckResult:
    """Every interaction's item has a row in `items`."""
    return _sql_check(warehouse, "check_interactions_unknown_items", dataset,
                      "interaction item missing from items")


def interactions_k_core(warehouse: Warehouse, dataset: str) -> dg.AssetCheckResult:
    """Every user and item keeps at least k_core interactions."""
    return _sql_check(warehouse, "check_interactions_k_core", dataset,
                      "user or item below the k-core threshold")


def items_ids_valid(warehouse: Warehouse, dataset: str) -> dg.AssetCheckResult:
    """One row per item: item_id and item_index unique and non-null; text non-empty."""
    with warehouse.connect(read_only=True) as con:
        df = read_partition(con, "items", dataset)
    return validate(df, [
        gx.expectations.ExpectColumnValuesToBeUnique(column="item_id"),
        gx.expectations.ExpectColumnValuesToBeUnique(column="item_index"),
        gx.expectations.ExpectColumnValuesToNotBeNull(column="text"),
        gx.expectations.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1),
    ], name="items_ids_valid")


def items_texts_distinct(warehouse: Warehouse, dataset: str,
                         config: ItemsTextsDistinctConfig | None = None) -> dg.AssetCheckResult:
    """No text is shared by more than `max_share` of the items (and `min_items` items); a failure
    warns, or blocks downstream assets when `blocking` is set."""
    config = config or ItemsTextsDistinctConfig()
    with warehouse.connect(read_only=True) as con:
        n_items = item_count(con, dataset)
        common = query(con, "items_most_common_texts", dataset=dataset, top=_SHOWN_TEXTS)
    limit = max(int(config.max_share * n_items), config.min_items)
    largest = int(common["items"].iloc[0]) if len(common) else 0
    shown = common.assign(text=common["text"].str.slice(0, 120))
    return dg.AssetCheckResult(
        passed=largest <= limit,
        severity=dg.AssetCheckSeverity.ERROR if config.blocking else dg.AssetCheckSeverity.WARN,
        metadata={"items": n_items, "largest_group": largest, "limit": limit,
                  "largest_share": largest / n_items if n_items else 0.0, "blocking": config.blocking,
                  "most_common_texts": dg.MetadataValue.md(shown.to_markdown(index=False))})


@dg.asset_check(name="items_texts_distinct", asset="items", blocking=True, partitions_def=dataset_partitions,
                description=items_texts_distinct.__doc__)
def _items_texts_distinct(context: dg.AssetCheckExecutionContext, config: ItemsTextsDistinctConfig,
                          warehouse: Warehouse) -> dg.AssetCheckResult:
    return items_texts_distinct(warehouse, context.partition_key, config)


def splits_one_valid_one_test(warehouse: Warehouse, dataset: str) -> dg.AssetCheckResult:
    """Leave-one-out: each user (>= 3 interactions) has exactly one valid and one test target."""
    return _sql_check(warehouse, "check_splits_eval_targets", dataset,
                      "user without exactly one valid and one test target")


def splits_history_precedes_target(warehouse: Warehouse, dataset: str) -> dg.AssetCheckResult:
    """Each history is exactly the items right before its target: no target leaks into its history."""
    return _sql_check(warehouse, "check_splits_history_precedes_target", dataset,
                      "history entry that is not the interaction right before the target")


ASSET_CHECKS = [
    partitioned_check("interactions", interactions_ids_valid),
    partitioned_check("interactions", interactions_items_exist, additional_deps=["items"]),
    partitioned_check("interactions", interactions_k_core),
    partitioned_check("items", items_ids_valid),
    _items_texts_distinct,
    partitioned_check("splits", splits_one_valid_one_test),
    partitioned_check("splits", splits_history_precedes_target),
]
