"""Datasets are partitions: `synthetic` plus each recognised folder under GENREC_DATA_ROOT.

The list is read when the code location loads, so a new folder appears after a reload
(`Reload` in the UI, or any new CLI invocation).
"""

import os

import dagster as dg

from genrec_ml.data.sources import discover_datasets

dataset_partitions = dg.StaticPartitionsDefinition(discover_datasets(os.environ.get("GENREC_DATA_ROOT")))
