"""Which models the asset graph trains: a checkpoint + metrics asset pair and a check per entry of
`genrec_ml.model_specs`, the list `python -m genrec_ml.cli reproduce` plans from too, so both
train the same variants.

Groups: `models` (TIGER, the core the nightly job retrains), `reasoning` (S²GR and CARE with their
papers' defaults), `s2gr_ablations` / `care_ablations` (each ablation its own asset pair, so one
can be re-run alone), `baselines` (item-id models).
"""

from genrec_assets.defs.models.assets import checkpoint_asset, metrics_asset, popularity_metrics
from genrec_assets.defs.models.checks import metrics_checks
from genrec_ml.model_specs import BASELINES, CARE_ABLATIONS, CORE, REASONING, S2GR_ABLATIONS

MODEL_SPECS = [*CORE, *REASONING, *S2GR_ABLATIONS, *CARE_ABLATIONS, *BASELINES]

MODEL_ASSETS = [popularity_metrics, *[make(spec) for spec in MODEL_SPECS for make in (checkpoint_asset, metrics_asset)]]
MODEL_CHECKS = [check for spec in MODEL_SPECS for check in metrics_checks(spec.prefix, spec.model, spec.variant)]
