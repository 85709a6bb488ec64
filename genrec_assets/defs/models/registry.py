"""Which models the asset graph trains: a checkpoint + metrics asset pair and a check per entry of
`genrec_ml.model_specs.MODEL_SPECS`, the list `python -m genrec_ml.cli reproduce` plans from too, so
both train the same variants (groups: see that module).
"""

from genrec_assets.defs.models.assets import checkpoint_asset, metrics_asset, popularity_metrics
from genrec_assets.defs.models.checks import metrics_checks
from genrec_ml.model_specs import MODEL_SPECS

MODEL_ASSETS = [popularity_metrics, *[make(spec) for spec in MODEL_SPECS for make in (checkpoint_asset, metrics_asset)]]
MODEL_CHECKS = [check for spec in MODEL_SPECS for check in metrics_checks(spec.prefix, spec.model, spec.variant)]
