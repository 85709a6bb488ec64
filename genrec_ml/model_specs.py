"""Every trainable model variant the project reports, by asset prefix (`tiger`, `s2gr_c8`, `sasrec_bce`, ...).

One list serves both ways of running a model: the Dagster graph builds a `<prefix>_checkpoint` /
`<prefix>_metrics` asset pair per entry (genrec_assets.defs.models.registry), and
`python -m genrec_ml.cli reproduce` plans its runs from it on a machine without Dagster. Keeping it
here, as plain data, is what makes a reproduced `s2gr_wo_think_loss` the same model as the asset's.

Groups: `models` (TIGER, the core the nightly job retrains), `reasoning` (S²GR, CARE and REG4Rec with
their papers' defaults), `s2gr_ablations` / `care_ablations` / `reg4rec_ablations` (each ablation its
own entry, so one can be re-run alone), `lasar` (decoder-only models: MiniOneRec, LASAR), `lasar_ablations`
(LASAR Table 2, Figure 4a), `baselines`
(item-id models).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from genrec_ml.errors import GenrecConfigError
from genrec_ml.experiments import Experiment
from genrec_ml.models.registry import model_class


@dataclass(frozen=True)
class ModelSpec:
    """One trainable model variant: which registry model, with what codes and settings."""

    model: str  # genrec_ml.models.registry name
    variant: str = "default"  # `metrics.variant` label
    tokenizer: str | None = "rq_vae"  # default codebook variant of SID models; None for item-id models
    model_settings: dict[str, Any] = field(default_factory=dict)  # what makes this variant
    asset_prefix: str = ""  # defaults to the model name
    group: str = "models"  # asset group in the UI: models (TIGER), reasoning, *_ablations, baselines
    n_coarse: int | None = None  # S²GR: recluster the codebook at this C instead of its stored clusters
    # start from the weights of the variant with this prefix (same dataset and seed) instead of
    # training: "pretrained" = before its post-training, "final" = its best.pt (genrec_ml.derived)
    source: str = ""
    source_stage: str = "pretrained"
    # start from the best weights of another model's variant with this prefix (same dataset and seed folder),
    # loaded where they fit (LASAR's Stage 2 from MiniOneRec's Stage 1; genrec_ml.train.checkpoint.warm_start)
    init_from: str = ""

    @property
    def cot(self) -> str:
        """The teacher-CoT input it trains on, its model's `cot_input`: "anchors" (cot_anchor_states: LASAR) or
        "text" (cot_texts: the explicit-CoT baseline); "" for the others and for a run that only decodes
        another's final weights."""
        if self.source and self.source_stage == "final":
            return ""
        return getattr(model_class(self.model), "cot_input", "")

    @property
    def prefix(self) -> str:
        return self.asset_prefix or self.model

    @property
    def codes(self) -> tuple[str | None, int | None]:
        """(tokenizer, n_coarse): what its inputs' catalog must hold, so which bundle it trains on."""
        return self.tokenizer, self.n_coarse

    def experiment(self, *, profile: str = "smoke", seed: int = 0, scheme: str = "loo", tokenizer: str | None = None,
                   model_settings: dict[str, Any] | None = None, train_settings: dict[str, Any] | None = None,
                   **fields: Any) -> Experiment:
        """This variant as an experiment; `model_settings` go on top of the variant's own, `fields`
        are further Experiment fields (eval_ks, eval_beam_width)."""
        return Experiment(model=self.model, variant=self.variant, profile=profile,
                          tokenizer=tokenizer or self.tokenizer, scheme=scheme, seed=seed,
                          model_overrides={**self.model_settings, **(model_settings or {})},
                          train_overrides=dict(train_settings or {}), **fields)


CORE = [ModelSpec("tiger", tokenizer="rq_vae")]

REASONING = [
    ModelSpec("s2gr", tokenizer="coba_rqvae", group="reasoning"),
    ModelSpec("care", tokenizer="rq_vae", group="reasoning"),
    ModelSpec("reg4rec", tokenizer="mpq", group="reasoning"),
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

# REG4Rec Table 3; the θ and h sweeps of Figure 3 are model settings (corp_threshold, msra_horizon) of any of these.
# w/o PARS, w/o MSRA and w/o CORP differ from REG4Rec only after pre-training: they start from its weights.
REG4REC_ABLATIONS = [
    ModelSpec("reg4rec", variant="wo_mpq", tokenizer="rq_vae_8x300", model_settings={"dynamic_order": False},
              asset_prefix="reg4rec_wo_mpq", group="reg4rec_ablations"),
    ModelSpec("reg4rec", variant="wo_crss", tokenizer="mpq", model_settings={"dynamic_order": False},
              asset_prefix="reg4rec_wo_crss", group="reg4rec_ablations"),
    ModelSpec("reg4rec", variant="wo_pars", tokenizer="mpq", model_settings={"pars_steps": 0},
              asset_prefix="reg4rec_wo_pars", group="reg4rec_ablations", source="reg4rec"),
    ModelSpec("reg4rec", variant="wo_msra", tokenizer="mpq", model_settings={"msra_horizon": 1},
              asset_prefix="reg4rec_wo_msra", group="reg4rec_ablations", source="reg4rec"),
    ModelSpec("reg4rec", variant="wo_corp", tokenizer="mpq", model_settings={"corp": False},
              asset_prefix="reg4rec_wo_corp", group="reg4rec_ablations", source="reg4rec", source_stage="final"),
]

# LASAR (§3.1): 4 x 256 RQ-KMeans codes for every decoder-only model. LASAR's Stage 2 (SFT with the latent loop,
# `lasar_sft`) starts from MiniOneRec, its Stage 1 (§2.3); the variant names are Table 2's rows, whose KL row is
# this SFT model (Table 3's LASAR adds the RL phase). Its ablations start from the same Stage-1 weights.
RL_STEPS = 200  # LASAR's RL phase: the paper gives no step count; REG4Rec's PARS takes as many here
LASAR = [
    ModelSpec("minionerec", tokenizer="rq_kmeans_4x256", group="lasar"),
    ModelSpec("lasar", variant="sft_kl_align", tokenizer="rq_kmeans_4x256", asset_prefix="lasar_sft", group="lasar",
              init_from="minionerec"),
    # the RL phase (§2.4) from lasar_sft's weights: GRPO + terminal KL + REINFORCE, Table 3's last row
    ModelSpec("lasar", tokenizer="rq_kmeans_4x256", model_settings={"rl_steps": RL_STEPS}, group="lasar",
              source="lasar_sft"),
    # LASAR's explicit-CoT baseline (GREAM's CoT SFT, direct-answer inference) on the same Stage-1 weights and CoT
    # texts; `explicit_cot_gen` decodes its weights in GREAM's reasoning mode (LASAR Table 4's "CoT Gen." time)
    ModelSpec("explicit_cot", tokenizer="rq_kmeans_4x256", group="lasar", init_from="minionerec"),
]
LASAR_ABLATIONS = [
    *[ModelSpec("lasar", variant=f"sft_{name}", tokenizer="rq_kmeans_4x256", model_settings={"alignment": kind},
                asset_prefix=f"lasar_sft_{name}", group="lasar_ablations", init_from="minionerec")
      for name, kind in (("no_align", "none"), ("cosine_align", "cosine"), ("mse_align", "mse"))],
    # Table 3's RL rows without REINFORCE (N still sampled from the SFT head), and without the terminal KL too
    *[ModelSpec("lasar", variant=variant, tokenizer="rq_kmeans_4x256", model_settings={"rl_steps": RL_STEPS, **off},
                asset_prefix=f"lasar_{variant}", group="lasar_ablations", source="lasar_sft")
      for variant, off in (("wo_reinforce", {"reinforce_weight": 0.0}),
                           ("wo_terminal_kl_wo_reinforce", {"reinforce_weight": 0.0, "terminal_kl_weight": 0.0}))],
    # Force N (Figure 4a runs it after RL on Sports; here on the SFT model)
    *[ModelSpec("lasar", variant=f"sft_n{n}", tokenizer="rq_kmeans_4x256", model_settings={"fixed_steps": n},
                asset_prefix=f"lasar_sft_n{n}", group="lasar_ablations", init_from="minionerec")
      for n in (1, 2, 4)],
    ModelSpec("explicit_cot", variant="cot_gen", tokenizer="rq_kmeans_4x256", model_settings={"inference": "generate"},
              asset_prefix="explicit_cot_gen", group="lasar_ablations", source="explicit_cot", source_stage="final"),
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

MODEL_SPECS = [*CORE, *REASONING, *S2GR_ABLATIONS, *CARE_ABLATIONS, *REG4REC_ABLATIONS, *LASAR, *LASAR_ABLATIONS,
               *BASELINES]
SPECS_BY_PREFIX = {s.prefix: s for s in MODEL_SPECS}
assert len(SPECS_BY_PREFIX) == len(MODEL_SPECS), "two model specs share an asset prefix"
assert all(not s.source or (s.source in SPECS_BY_PREFIX and not SPECS_BY_PREFIX[s.source].source
                            and SPECS_BY_PREFIX[s.source].codes == s.codes) for s in MODEL_SPECS), \
    "a variant starts from a trained variant of the same codes"
assert all(not s.init_from or (s.init_from in SPECS_BY_PREFIX and SPECS_BY_PREFIX[s.init_from].codes == s.codes)
           for s in MODEL_SPECS), "a model is initialised from a trained variant of the same codes"


def spec(prefix: str) -> ModelSpec:
    """The variant named by its asset prefix (`tiger`, `s2gr_c8`, `care_letter`, ...)."""
    if prefix not in SPECS_BY_PREFIX:
        raise GenrecConfigError("models", f"unknown model {prefix!r}; known: {', '.join(SPECS_BY_PREFIX)}")
    return SPECS_BY_PREFIX[prefix]
