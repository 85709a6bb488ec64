"""Datasets are partitions of one dynamic partitions definition, `datasets`, kept in the instance.

Keys are added by the `dataset_folders` sensor as folders appear under GENREC_DATA_ROOT, by
`python -m genrec_assets.datasets` (registers `synthetic` and every recognised folder at once, for
CLI runs without the daemon), or by hand in the UI's materialize dialog ("Add partition").
"""

import dagster as dg

dataset_partitions = dg.DynamicPartitionsDefinition(name="datasets")
