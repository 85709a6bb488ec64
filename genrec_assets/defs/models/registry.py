"""Which models the asset graph trains: a checkpoint + metrics asset pair and a check per entry.

Groups: `models` (TIGER, the core the nightly job retrains), `reasoning` (S²GR and CARE with their
papers' defaults), `s2gr_ablations` / `care_ablations` (each ablation its own asset pair, so one
can be re-run alone), `baselines` (item-id models).
"""

from genrec_assets.defs.models.assets import ModelSpec, checkpoint_asset, metrics_asset, popularity_metrics
from genrec_assets.defs.models.checks import metrics_checks

CORE = [ModelSpec("tiger", tokenizer="rq_vae")]

REASONING = [
    ModelSpec("s2gr", tokenizer="coba_rqvae", group="reasoning"),
    ModelSpec("care", tokenizer="rq_vae", group="reasoning"),
]

S2GR_ABLATIONS = [
    ModelSpec("s2gr", variant="wo_coba", tokenizer="rq_vae", asset_prefix="s2gr_wo_coba", group="s2gr_ablations"),
    ModelSpec("s2gr", variant="wo_reasoning", tokenizer="coba_rqvae", model_settings={"use_reasoning": False},
              asset_prefix="s2gr_wo_reasoning", group="s2gr_ablations"),
    ModelSpec("s2gr", variant="wo_think_loss", tokenizer="coba_rqvae", model_settings={"think_loss_weight": 0.0},
              asset_prefix="s2gr_wo_think_loss", group="s2gr_ablations"),
    *[ModelSpec("s2gr", variant=f"c{c}", tokenizer="coba_rqvae", n_coarse=c, asset_prefix=f"s2gr_c{c}",
                group="s2gr_ablations") for c in (4, 8, 32, 64)],
]

CARE_ABLATIONS = [
    ModelSpec("care", variant="letter", tokenizer="letter", asset_prefix="care_letter", group="care_ablations"),
    ModelSpec("care", variant="wo_reasoning", tokenizer="rq_vae", model_settings={"queries_per_level": 0},
              asset_prefix="care_wo_reasoning", group="care_ablations"),
    ModelSpec("care", variant="wo_progressive", tokenizer="rq_vae", model_settings={"progressive_attention": False},
              asset_prefix="care_wo_progressive", group="care_ablations"),
    ModelSpec("care", variant="wo_diversity", tokenizer="rq_vae", model_settings={"diversity_weight": 0.0},
              asset_prefix="care_wo_diversity", group="care_ablations"),
]

BASELINES = [
    ModelSpec("sasrec", tokenizer=None, group="baselines"),
    ModelSpec("sasrec", variant="bce", tokenizer=None, model_settings={"loss": "bce"}, asset_prefix="sasrec_bce",
              group="baselines"),
    ModelSpec("gru4rec", tokenizer=None, group="baselines"),
    ModelSpec("caser", tokenizer=None, group="baselines"),
    ModelSpec("bert4rec", tokenizer=None, group="baselines"),
    ModelSpec("rearec", variant="erl", tokenizer=None, model_settings={"variant": "erl"}, asset_prefix="rearec_erl",
              group="baselines"),
    ModelSpec("rearec", variant="prl", tokenizer=None, model_settings={"variant": "prl"}, asset_prefix="rearec_prl",
              group="baselines"),
]

MODEL_SPECS = [*CORE, *REASONING, *S2GR_ABLATIONS, *CARE_ABLATIONS, *BASELINES]

MODEL_ASSETS = [popularity_metrics, *[make(spec) for spec in MODEL_SPECS for make in (checkpoint_asset, metrics_asset)]]
MODEL_CHECKS = [check for spec in MODEL_SPECS for check in metrics_checks(spec.prefix, spec.model, spec.variant)]
