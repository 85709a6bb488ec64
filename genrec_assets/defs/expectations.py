"""How checks are declared: great-expectations for DataFrames, SQL files for relational rules.

Each check is a plain function of (warehouse, dataset) returning an AssetCheckResult, so it can
be run directly on any warehouse; `partitioned_check` turns it into a blocking Dagster check.
"""


import logging
from collections.abc import Callable, Sequence

import dagster as dg
import pandas as pd

logging.getLogger("great_expectations").setLevel(logging.WARNING)


def validate(df: pd.DataFrame, expectations: list, *, name: str) -> dg.AssetCheckResult:
    """Validate `df` against great-expectations `expectations`; pass only if all of them pass."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas(f"{name}_source")
             .add_dataframe_asset(name)
             .add_batch_definition_whole_dataframe("whole")
             .get_batch(batch_parameters={"dataframe": df}))
    suite = gx.ExpectationSuite(name=name, expectations=expectations)
    result = batch.validate(suite)
    failed = {
        r.expectation_config.type + ":" + str(r.expectation_config.kwargs.get("column")
                                             or r.expectation_config.kwargs.get("column_list")):
            r.result.get("unexpected_count", r.result.get("observed_value"))
        for r in result.results if not r.success
    }
    return dg.AssetCheckResult(
        passed=bool(result.success),
        metadata={"rows": len(df), "expectations": len(expectations),
                  "failed": dg.MetadataValue.json(failed)},
    )


def zero_violations(count: int, what: str, sample: pd.DataFrame | None = None) -> dg.AssetCheckResult:
    """A SQL check result: passes when the query found no violating row."""
    metadata = {"violations": int(count), "rule": what}
    if sample is not None and len(sample):
        metadata["sample"] = dg.MetadataValue.md(sample.head(10).to_markdown(index=False))
    return dg.AssetCheckResult(passed=count == 0, metadata=metadata)


CheckFn = Callable[..., dg.AssetCheckResult]


def partitioned_check(asset: str, fn: CheckFn, *, blocking: bool = True,
                      additional_deps: Sequence[str] = ()) -> dg.AssetChecksDefinition:
    """A Dagster asset check named after `fn`, run per dataset partition."""
    from genrec_assets.defs.resources import Warehouse

    @dg.asset_check(name=fn.__name__, asset=asset, blocking=blocking,
                    additional_deps=list(additional_deps), description=fn.__doc__)
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        return fn(warehouse, context.partition_key)

    return _check
