"""Jobs users launch from the UI or CLI, and the nightly retraining schedule."""

import os

import dagster as dg

from genrec_assets.defs.partitions import dataset_partitions

# Model groups with their own jobs; the default job leaves them out to stay within minutes on a CPU.
SEPARATE_GROUPS = ("baselines", "reasoning", "s2gr_ablations", "care_ablations", "reg4rec_ablations", "lasar",
                   "lasar_ablations")
POPULARITY = dg.AssetSelection.assets("popularity_metrics")
REPRODUCTION = dg.AssetSelection.assets("reproduction")  # every model job ends by refreshing the comparison

default_pipeline_job = dg.define_asset_job(
    "default_pipeline",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(*SEPARATE_GROUPS),
    partitions_def=dataset_partitions,
    description="The core for one dataset: raw logs -> interactions, items, splits -> text embeddings -> "
                "co-occurrence edges -> propagated embeddings -> every codebook -> popularity and TIGER "
                "trained and evaluated into `metrics`, the reproduction table beside the papers, with every check.",
)

train_evaluate_job = dg.define_asset_job(
    "train_evaluate",
    selection=dg.AssetSelection.groups("models") | REPRODUCTION,
    partitions_def=dataset_partitions,
    description="Retrain TIGER and re-evaluate it and the popularity floor on one dataset, appending to "
                "`metrics` (its data and codebooks must exist). The nightly schedule runs this.",
)



def _model_job(name: str, selection: dg.AssetSelection, description: str):
    return dg.define_asset_job(name, selection=selection | POPULARITY | REPRODUCTION, partitions_def=dataset_partitions,
                               description=description)


baselines_job = _model_job(
    "baselines", dg.AssetSelection.groups("baselines"),
    "Train and evaluate every item-id baseline (SASRec CE and BCE, GRU4Rec, Caser, BERT4Rec, ReaRec ERL and PRL) "
    "on one dataset into `metrics`.")
reasoning_job = _model_job(
    "reasoning", dg.AssetSelection.groups("reasoning"),
    "Train and evaluate S²GR, CARE and REG4Rec with their papers' defaults on one dataset into `metrics`.")
s2gr_ablations_job = _model_job(
    "s2gr_ablations",
    dg.AssetSelection.groups("s2gr_ablations") | dg.AssetSelection.assets("s2gr_checkpoint", "s2gr_metrics"),
    "S²GR and its ablations (w/o CoBa, w/o reasoning, w/o L_Think, cluster count C) on one dataset; "
    "`metrics.variant` tells them apart.")
care_ablations_job = _model_job(
    "care_ablations",
    dg.AssetSelection.groups("care_ablations") | dg.AssetSelection.assets("care_checkpoint", "care_metrics"),
    "CARE on TIGER (RQ-VAE) and LETTER codes and its ablations (w/o reasoning, w/o progressive attention, "
    "w/o diversity loss) on one dataset; `metrics.variant` tells them apart.")
reg4rec_ablations_job = _model_job(
    "reg4rec_ablations",
    dg.AssetSelection.groups("reg4rec_ablations")
    | dg.AssetSelection.assets("mpq_codebook", "reg4rec_checkpoint", "reg4rec_metrics"),
    "REG4Rec and its ablations (REG4Rec Table 3: w/o MPQ on an 8 x 300 RQ-VAE, w/o CRSS, w/o PARS, w/o MSRA, "
    "w/o CORP) on one dataset; `metrics.variant` tells them apart. w/o PARS, w/o MSRA and w/o CORP start "
    "from reg4rec_checkpoint's weights (pre-trained, or final for w/o CORP) instead of pre-training again. "
    "The θ / h sweeps: `python -m genrec_ml.cli train --start-from <reg4rec run> --start-stage final "
    "(θ: corp_threshold) or pretrained (h: msra_horizon)`.")
lasar_job = _model_job(
    "lasar", dg.AssetSelection.groups("lasar"),
    "LASAR's line on one dataset: the 4 x 256 RQ-KMeans codebook, MiniOneRec (decoder-only SFT on the "
    "MiniOneRec prompt, LASAR's Stage 1 and its 'Pure SFT' baseline) into `metrics`, and `cot_texts` (a "
    "segmented teacher chain of thought per training example: LASAR's alignment targets and policy-head labels), "
    "`cot_anchor_states` (each segment's hidden state under the Stage-1 backbone), LASAR's Stage 2 (latent "
    "loop, policy head, step-wise bi-KL alignment) from MiniOneRec's weights, and its RL phase (GRPO, terminal "
    "KL, REINFORCE on the step policy) from Stage 2's, and the explicit-CoT baseline (GREAM's CoT SFT from "
    "MiniOneRec's weights, direct answers), into `metrics`.")
lasar_ablations_job = _model_job(
    "lasar_ablations",
    dg.AssetSelection.groups("lasar_ablations") | dg.AssetSelection.groups("lasar"),
    "LASAR and its ablations on one dataset: Table 2's alignments (none, cosine, MSE against bi-KL), Table 3's "
    "RL without REINFORCE and without the terminal KL, and Figure 4a's Force N (N = 1, 2, 4 against the policy "
    "head), each from the same Stage-1 weights and CoT anchors; the explicit-CoT weights answering after a "
    "written CoT (Table 4's 'CoT Gen.' time); `metrics.variant` tells them apart.")
MODEL_JOBS = [baselines_job, reasoning_job, s2gr_ablations_job, care_ablations_job, reg4rec_ablations_job,
              lasar_job, lasar_ablations_job]


def nightly_datasets(instance: dg.DagsterInstance) -> list[str]:
    """GENREC_NIGHTLY_DATASETS (comma-separated) or every registered dataset partition."""
    configured = os.environ.get("GENREC_NIGHTLY_DATASETS", "")
    names = [name.strip() for name in configured.split(",") if name.strip()]
    known = instance.get_dynamic_partitions(dataset_partitions.name)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"GENREC_NIGHTLY_DATASETS names unknown datasets {unknown}; known: {known}")
    return names or known


@dg.schedule(
    cron_schedule="0 2 * * *", job=train_evaluate_job, execution_timezone="UTC",
    default_status=(dg.DefaultScheduleStatus.RUNNING if os.environ.get("GENREC_NIGHTLY") == "on"
                    else dg.DefaultScheduleStatus.STOPPED),
    description="02:00 UTC: retrain and re-evaluate every configured dataset (GENREC_NIGHTLY_DATASETS). "
                "Off until turned on in the UI or started with GENREC_NIGHTLY=on.",
)
def nightly_retraining(context: dg.ScheduleEvaluationContext):
    night = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [dg.RunRequest(run_key=f"{dataset}-{night}", partition_key=dataset)
            for dataset in nightly_datasets(context.instance)]
