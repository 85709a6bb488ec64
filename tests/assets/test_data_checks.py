"""items_texts_distinct on hand-made warehouses: what it measures, and warn versus block."""

import dagster as dg
import pandas as pd
import pytest

from genrec_assets.defs.data.checks import ItemsTextsDistinctConfig, _items_texts_distinct, items_texts_distinct
from genrec_assets.defs.partitions import dataset_partitions
from genrec_assets.defs.resources import Warehouse
from genrec_ml import warehouse
from tests.assets.pipeline import shared_instance

SHARED = '<span class="a-size-medium a-color-secondary". Category: All Beauty'


def _items(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"i{n}" for n in range(len(texts))], "item_index": range(len(texts)),
                         "text": texts})


def _warehouse(tmp_path, texts: list[str]) -> Warehouse:
    path = tmp_path / "w.duckdb"
    with warehouse.connect(path) as con:
        warehouse.replace_partition(con, "items", "d", _items(texts))
    return Warehouse(path=str(path))


# 20 items: 8 share one text, more than the limit max(1% of 20, 5) = 5.
DEBRIS_TEXTS = [SHARED] * 8 + ["Rose water"] * 2 + [f"Item {n}" for n in range(10)]


def test_distinct_texts_pass(tmp_path):
    result = items_texts_distinct(_warehouse(tmp_path, [SHARED] * 5 + [f"Item {n}" for n in range(15)]), "d")
    assert result.passed
    assert result.metadata["largest_group"].value == 5


@pytest.mark.parametrize(("blocking", "severity"), [(False, dg.AssetCheckSeverity.WARN),
                                                    (True, dg.AssetCheckSeverity.ERROR)])
def test_shared_text_warns_or_blocks_by_config(tmp_path, blocking, severity):
    config = ItemsTextsDistinctConfig(blocking=blocking)
    result = items_texts_distinct(_warehouse(tmp_path, DEBRIS_TEXTS), "d", config)
    assert not result.passed
    assert result.severity == severity
    meta = {key: value.value for key, value in result.metadata.items()}
    assert (meta["items"], meta["largest_group"], meta["limit"], meta["largest_share"]) == (20, 8, 5, 0.4)
    table = meta["most_common_texts"].splitlines()
    assert SHARED in table[2] and table[2].rstrip("| ").endswith("8")  # largest group first
    assert "Rose water" in table[3]


def test_max_share_and_min_items_set_the_limit(tmp_path):
    wh = _warehouse(tmp_path, DEBRIS_TEXTS)
    assert items_texts_distinct(wh, "d", ItemsTextsDistinctConfig(min_items=8)).passed
    assert not items_texts_distinct(wh, "d", ItemsTextsDistinctConfig(min_items=1, max_share=0.35)).passed
    assert items_texts_distinct(wh, "d", ItemsTextsDistinctConfig(min_items=1, max_share=0.4)).passed


@pytest.mark.parametrize("blocking", [False, True])
def test_only_a_blocking_config_stops_downstream_assets(tmp_path, blocking):
    wh = _warehouse(tmp_path, DEBRIS_TEXTS)

    @dg.asset(name="items", partitions_def=dataset_partitions)
    def items() -> None:  # stands in for cleaned_dataset: the warehouse already holds the rows
        pass

    @dg.asset(partitions_def=dataset_partitions, deps=["items"])
    def item_text_embeddings() -> None:
        pass

    instance = shared_instance()
    if not instance.has_dynamic_partition("datasets", "d"):
        instance.add_dynamic_partitions("datasets", ["d"])
    result = dg.materialize(
        [items, item_text_embeddings, _items_texts_distinct], partition_key="d", instance=instance,
        resources={"warehouse": wh}, raise_on_error=False,
        run_config={"ops": {"items_items_texts_distinct": {"config": {"blocking": blocking}}}})
    evaluation = result.get_asset_check_evaluations()[0]
    assert not evaluation.passed
    materialized = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
    assert ("item_text_embeddings" in materialized) is not blocking
