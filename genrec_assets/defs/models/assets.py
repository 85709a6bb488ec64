"""Trained models and their metrics: a `<model>_checkpoint` and a `<model>_metrics` asset per model.

The checkpoint asset trains (`genrec_ml.experiments.train_experiment`) and logs the run to
MLflow; the metrics asset ranks valid and test with the best weights and appends the figures to
the warehouse table `metrics`, which the `leaderboard` view summarises. `popularity_metrics` is
the floor every model's blocking check compares against.
"""

import base64
import io
import json
import os
import uuid
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import torch

from genrec_assets.defs.partitions import dataset_partitions
from genrec_assets.defs.resources import Artifacts, Tracking, Warehouse
from genrec_ml.derived import derive_experiment
from genrec_ml.evaluation import (
    Evaluation,
    evaluate_experiment,
    evaluate_popularity,
    evaluation_run_row,
    labelled_metrics,
    metric_labels,
    metrics_by_split,
)
from genrec_ml.experiments import Catalog, Experiment, read_run_info, train_experiment, write_run_info
from genrec_ml.inputs import warehouse_catalog, warehouse_splits
from genrec_ml.model_specs import ModelSpec
from genrec_ml.models.registry import input_kind
from genrec_ml.tracking import POST_TRAINING, CurveLogger, MlflowLogger, fan_out
from genrec_ml.warehouse import append_evaluation, query, read_partition

GROUP = "models"


class TrainRunConfig(dg.Config):
    profile: str = "smoke"  # smoke: minutes on a CPU; paper: the paper's model and training budget
    tokenizer: str = ""  # codebook variant (rq_vae, coba_rqvae, letter, ...); "" = the model's default
    scheme: str = "loo"  # split scheme: loo or ratio
    seed: int = 0
    seeds: list[int] = []  # several seeds, e.g. [0, 1, 2]: one run each in <model>/seed<k>/; [] = just `seed`
    model_settings: dict = {}  # overrides of the model's dataclass config, e.g. {"d_model": 256}
    train_settings: dict = {}  # overrides of TrainConfig, e.g. {"max_epochs": 5, "device": "cuda"}
    threads: int = 0  # torch CPU threads; 0 = one per core


class EvalRunConfig(dg.Config):
    batch_size: int = 256  # users ranked per batch
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0 = one per core


def spec_experiment(spec: ModelSpec, config: TrainRunConfig) -> Experiment:
    """The experiment a checkpoint asset of `spec` trains under this run config."""
    return spec.experiment(profile=config.profile, seed=config.seed, scheme=config.scheme,
                           tokenizer=config.tokenizer or None, model_settings=config.model_settings,
                           train_settings=config.train_settings)


def load_catalog(warehouse: Warehouse, artifacts: Artifacts, dataset: str, tokenizer: str | None,
                 n_coarse: int | None = None) -> Catalog:
    folder = artifacts.folder(dataset, tokenizer) if tokenizer else None
    with warehouse.connect(read_only=True) as con:
        return warehouse_catalog(con, folder, dataset, tokenizer, n_coarse)


def load_splits(warehouse: Warehouse, dataset: str) -> pd.DataFrame:
    with warehouse.connect(read_only=True) as con:
        return warehouse_splits(con, dataset)


def write_metrics(warehouse: Warehouse, dataset: str, labels: dict, metrics: pd.DataFrame,
                  mlflow_run_id: str | None, dagster_run_id: str, run_info: dict | None = None,
                  ranks: pd.DataFrame | None = None) -> str:
    """Append one evaluation (rows split, metric, k, value) under `labels`, with its training facts
    (`evaluation_runs`) and per-user test ranks (`evaluation_ranks`); returns its evaluation_id."""
    evaluation_id = uuid.uuid4().hex
    rows = labelled_metrics(metrics, dataset, labels, evaluation_id, mlflow_run_id, dagster_run_id)
    run = evaluation_run_row(dataset, evaluation_id, run_info) if run_info else None
    ranks = ranks.assign(dataset=dataset, evaluation_id=evaluation_id) if ranks is not None else None
    with warehouse.connect() as con:
        append_evaluation(con, rows, run, ranks)
    return evaluation_id


def metrics_markdown(metrics: pd.DataFrame) -> str:
    return metrics_by_split(metrics).round(4).to_markdown()


def png_markdown(figure, alt: str) -> dg.MetadataValue:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})")


def curve_figure(history: list[dict], title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3), layout="constrained")
    loss_ax, metric_ax = fig.subplots(1, 2)
    steps = [r["step"] for r in history]
    loss_ax.plot(steps, [r["train_loss"] for r in history], marker="o")
    loss_ax.set(xlabel="step", ylabel="train loss", title=title)
    for name in ("recall@10", "ndcg@10"):
        metric_ax.plot(steps, [r.get(name, np.nan) for r in history], marker="o", label=name)
    metric_ax.set(xlabel="step", title="validation")
    metric_ax.legend()
    return fig


def set_threads(threads: int) -> int:
    torch.set_num_threads(threads or os.cpu_count() or 1)
    return torch.get_num_threads()


def checkpoint_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    kind = input_kind(spec.model)
    deps = ["splits", "items"] + ([f"{spec.tokenizer}_codebook"] if kind == "sids" else [])
    deps += [f"{spec.source}_checkpoint"] if spec.source else []
    deps += [f"{spec.init_from}_checkpoint"] if spec.init_from else []
    deps += {"anchors": ["cot_anchor_states"], "text": ["cot_texts"], "": []}[spec.cot]
    started = (f" Starts from the {spec.source_stage} weights of {spec.source}_checkpoint (same seeds) instead of "
               "pre-training again: it differs from it only after pre-training." if spec.source else "")
    if spec.init_from:
        anchors = {"anchors": ", trained on the CoT anchors that checkpoint produced (cot_anchor_states)",
                   "text": ", trained to write the teacher CoT (cot_texts) before its answer", "": ""}[spec.cot]
        started = f" Starts from {spec.init_from}_checkpoint's best weights (the same seed folder){anchors}."

    @dg.asset(name=f"{spec.prefix}_checkpoint", partitions_def=dataset_partitions, group_name=spec.group, deps=deps,
              description=f"{spec.model} ({spec.variant}) trained on the dataset's train split, best weights by "
                          "validation NDCG@10; best.pt and run.json in the artifacts folder, the run in MLflow."
                          + started)
    def _asset(context: dg.AssetExecutionContext, config: TrainRunConfig, warehouse: Warehouse,
               artifacts: Artifacts, tracking: Tracking) -> dg.MaterializeResult:
        dataset = context.partition_key
        threads = set_threads(config.threads)
        experiment = spec_experiment(spec, config)
        catalog = load_catalog(warehouse, artifacts, dataset, experiment.tokenizer, spec.n_coarse)
        splits = load_splits(warehouse, dataset)
        folder = artifacts.folder(dataset, "models", spec.prefix)
        runs = {f"seed{seed}": replace(experiment, seed=seed) for seed in config.seeds} or {".": experiment}
        source = artifacts.folder(dataset, "models", spec.source) if spec.source else None
        init = artifacts.folder(dataset, "models", spec.init_from) if spec.init_from else None
        trained = {name: train_one(spec, dataset, run, splits, catalog, folder / name, tracking, context.run_id,
                                   context.log, source / name if source else None,
                                   init_from=init / name / "best.pt" if init else None,
                                   cot=load_cot(warehouse, dataset, run.scheme, name, spec.cot))
                   for name, run in runs.items()}
        write_seed_folders(folder, list(runs))
        first, (model, run_id, figure) = next(iter(trained)), next(iter(trained.values()))
        metadata = {
            "mlflow_run_id": run_id, "seeds": [run.seed for run in runs.values()],
            "checkpoint": dg.MetadataValue.path(str(model.checkpoint)),
            "profile": experiment.profile, "tokenizer": str(experiment.tokenizer), "torch_threads": threads,
            "steps": model.info["steps"],
            "train_seconds": round(sum(t.info["train_seconds"] for t, _, _ in trained.values()), 1),
            "parameters": model.info["parameters"],
            "best_valid": dg.MetadataValue.json({name: {k: float(v) for k, v in t.info["best_valid"].items()}
                                                 for name, (t, _, _) in trained.items()}),
            **post_training_metadata(model),
        }
        if spec.source:
            metadata["started_from"] = dg.MetadataValue.json(model.info["derived_from"])
        else:
            samples = model.result.steps * model.info["train_config"]["batch_size"]
            metadata["samples_per_second"] = round(samples / max(model.result.seconds, 1e-9), 1)
        if figure is not None:
            metadata["training_curve"] = png_markdown(figure, f"training curve ({first})")
        return dg.MaterializeResult(metadata=metadata)

    return _asset


def post_training_metadata(trained) -> dict:
    """REG4Rec: PARS reward curves, mean rewards of the last step and the validations before and after;
    LASAR: its RL phase's reward and mean N over the steps (Figure 5a), the last step and the validations."""
    post = trained.post_training
    if post is None or not post.history:
        return {}
    last = post.history[-1]
    if "mean_n" in last:
        from genrec_ml.eval.latent_steps import plot_rl_dynamics

        return {
            "rl_steps": post.steps, "rl_seconds": round(post.seconds, 1),
            "rl_last_step": dg.MetadataValue.json({k: round(v, 5) for k, v in last.items()}),
            "rl_validations": dg.MetadataValue.md(pd.DataFrame(post.evaluations).round(4).to_markdown(index=False)),
            "rl_dynamics": png_markdown(plot_rl_dynamics(post.history), "LASAR RL: reward and mean N"),
        }
    from genrec_ml.eval.reasoning_paths import plot_rewards

    return {
        "pars_steps": post.steps, "pars_seconds": round(post.seconds, 1),
        "pars_rewards_last_step": dg.MetadataValue.json({k: round(v, 4) for k, v in last.items()
                                                         if k.startswith("reward_")}),
        "pars_validations": dg.MetadataValue.md(pd.DataFrame(post.evaluations).round(4).to_markdown(index=False)),
        "pars_reward_curve": png_markdown(plot_rewards(post.history), "PARS reward curves"),
    }


def load_cot(warehouse: Warehouse, dataset: str, scheme: str, stage1: str, kind: str) -> pd.DataFrame | None:
    """The CoT supervision per training example of a spec with `cot = kind`: LASAR's, the anchors of Stage-1 run
    folder `stage1`; the explicit-CoT baseline's, the `cot_texts` segments; None for ""."""
    from genrec_ml.text.anchors import anchors_by_example

    if not kind:
        return None
    if kind == "text":
        with warehouse.connect(read_only=True) as con:
            rows = query(con, "cot_text_rows", dataset=dataset, scheme=scheme)
        if rows.empty:
            raise ValueError(f"cot_texts has no rows for {dataset}, scheme {scheme!r}: materialize cot_texts")
        return rows
    with warehouse.connect(read_only=True) as con:
        rows = query(con, "cot_anchor_rows", dataset=dataset, scheme=scheme, stage1=stage1)
    if rows.empty:
        raise ValueError(f"cot_anchor_states has no rows for {dataset}, scheme {scheme!r}, Stage-1 run {stage1!r}; "
                         "materialize minionerec_checkpoint with the same seeds, then cot_anchor_states")
    return anchors_by_example(rows)


def event_log(log, label: str, post_training_every: int = 25):
    """A curve sink (genrec_ml.tracking.CurveLogger) writing to the Dagster run's event log, so that a long
    training or post-training phase (REG4Rec's PARS, LASAR's RL) shows its progress while it runs: every point
    it is given, of the post-training steps every `post_training_every`-th."""
    def sink(kind: str, step: int, metrics: dict[str, float]) -> None:
        if kind in POST_TRAINING and step % post_training_every:
            return
        log.info(f"{label}: {kind} step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    return sink


def train_one(spec: ModelSpec, dataset: str, experiment: Experiment, splits: pd.DataFrame, catalog: Catalog,
              folder, tracking: Tracking, dagster_run_id: str, log, source=None, init_from=None, cot=None):
    """Train one seed of `spec` into `folder` as an MLflow run (from the run in `source` when the spec
    starts from another's weights; `init_from` / `cot` as `train_experiment`'s), its curves also in `log` (the
    run's event log; train points every 500 steps); returns (TrainedModel, run id, curve figure or None)."""
    tags = {"dataset": dataset, "model": spec.model, "variant": spec.variant, "profile": experiment.profile,
            "tokenizer": str(experiment.tokenizer), "seed": str(experiment.seed), "dagster_run_id": dagster_run_id}
    with tracking.run("training", f"{spec.prefix}-{dataset}", tags) as run:
        import mlflow

        mlflow.log_params({f"experiment.{k}": str(v) for k, v in experiment.__dict__.items()})
        callback = fan_out(MlflowLogger(), CurveLogger(event_log(log, f"{spec.prefix} seed {experiment.seed}"),
                                                       every=500))
        if source is not None:
            trained = derive_experiment(experiment, splits, catalog, folder, source, spec.source_stage,
                                        callback=callback, cot=cot)
            mlflow.set_tags({"started_from": str(source), "start_stage": spec.source_stage})
        else:
            trained = train_experiment(experiment, splits, catalog, folder, callback=callback,
                                       init_from=init_from, cot=cot)
        mlflow.log_params({f"train.{k}": str(v) for k, v in trained.info["train_config"].items()})
        figure = None
        if source is None:
            figure = curve_figure(trained.result.history, f"{spec.prefix} on {dataset} (seed {experiment.seed})")
            mlflow.log_figure(figure, "training_curve.png")
        mlflow.log_artifact(str(trained.checkpoint))
        mlflow.log_metrics({"train_seconds": trained.info["train_seconds"], "steps": trained.info["steps"]})
        run_id = run.info.run_id
    write_run_info(folder, {**trained.info, "mlflow_run_id": run_id, "dagster_run_id": dagster_run_id})
    return trained, run_id, figure


SEED_FOLDERS = "seeds.json"


def write_seed_folders(folder, names: list[str]) -> None:
    """Which run folders the newest checkpoint materialization trained ("." = the model folder itself)."""
    (folder / SEED_FOLDERS).write_text(json.dumps(names))


def read_seed_folders(folder) -> list[str]:
    path = folder / SEED_FOLDERS
    return json.loads(path.read_text()) if path.is_file() else ["."]


def metrics_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(name=f"{spec.prefix}_metrics", partitions_def=dataset_partitions, group_name=spec.group,
              deps=[f"{spec.prefix}_checkpoint", "popularity_metrics"],
              description=f"Valid and test metrics of {spec.prefix}_checkpoint, appended to the `metrics` table.")
    def _asset(context: dg.AssetExecutionContext, config: EvalRunConfig, warehouse: Warehouse,
               artifacts: Artifacts, tracking: Tracking) -> dg.MaterializeResult:
        dataset = context.partition_key
        set_threads(config.threads)
        folder = artifacts.folder(dataset, "models", spec.prefix)
        splits = load_splits(warehouse, dataset)
        evaluations = {}
        for name in read_seed_folders(folder):
            info = read_run_info(folder / name)
            experiment = Experiment(**{**info["experiment"], "eval_ks": tuple(info["experiment"]["eval_ks"])})
            catalog = load_catalog(warehouse, artifacts, dataset, experiment.tokenizer, spec.n_coarse)
            evaluation = evaluate_experiment(folder / name / "best.pt", splits, catalog, experiment,
                                             batch_size=config.batch_size, device=config.device)
            run_id = info.get("mlflow_run_id")
            evaluation_id = write_metrics(warehouse, dataset, metric_labels(experiment), evaluation.metrics, run_id,
                                          context.run_id, info, evaluation.ranks)
            if run_id:
                with tracking.resume(run_id):
                    import mlflow

                    mlflow.log_metrics({f"final_{r.split}_{r.metric}" + (f"_at_{r.k}" if r.k >= 0 else ""): r.value
                                        for r in evaluation.metrics.itertuples()})
            evaluations[experiment.seed] = (evaluation, evaluation_id, run_id)
        evaluation, evaluation_id, run_id = next(iter(evaluations.values()))
        metadata = evaluation_metadata(evaluation)
        if len(evaluations) > 1:
            metadata["test_ndcg_10_per_seed"] = dg.MetadataValue.json(
                {str(seed): test_value(e.metrics, "ndcg", 10) for seed, (e, _, _) in evaluations.items()})
        return dg.MaterializeResult(metadata={**metadata, "evaluation_id": evaluation_id, "mlflow_run_id": run_id,
                                              "profile": experiment.profile, "tokenizer": str(experiment.tokenizer),
                                              "evaluation_ids": [i for _, i, _ in evaluations.values()]})

    return _asset


def test_value(metrics: pd.DataFrame, metric: str, k: int) -> float:
    test = metrics[metrics["split"] == "test"]
    return float(test[(test["metric"] == metric) & (test["k"] == k)]["value"].iloc[0])


def evaluation_metadata(evaluation: Evaluation) -> dict:
    metadata = {
        "metrics": dg.MetadataValue.md(metrics_markdown(evaluation.metrics)),
        **{f"{split}_users_per_second": round(evaluation.users[split] / max(evaluation.seconds[split], 1e-9), 1)
           for split in evaluation.seconds},
    }
    for metric, k in (("recall", 10), ("ndcg", 10)):
        metadata[f"test_{metric}_{k}"] = test_value(evaluation.metrics, metric, k)
    if evaluation.token_bias is not None:
        from genrec_ml.eval import plot_token_bias

        bias = evaluation.token_bias
        metadata["token_recall_per_level"] = dg.MetadataValue.json(
            [round(float(x), 4) for x in evaluation.token_recall])
        metadata["popularity_amplification_per_level"] = dg.MetadataValue.json(
            [None if np.isnan(x) else round(float(x), 4) for x in bias.amplification])
        metadata["token_bias"] = png_markdown(plot_token_bias(bias), "token popularity bias")
    if evaluation.search is not None and evaluation.search.step_positions is not None:
        from genrec_ml.eval.reasoning_paths import plot_step_orders

        metadata["corp_pruned_share"] = round(evaluation.search.pruned_share, 4)
        metadata["crss_step_order"] = png_markdown(plot_step_orders(evaluation.search.step_positions.numpy()),
                                                   "CRSS step orders")
    if evaluation.latent_steps is not None:
        from genrec_ml.eval.latent_steps import plot_latent_steps

        steps, ranks = evaluation.latent_steps, evaluation.ranks["rank"].to_numpy()
        metadata["latent_steps_mean"] = float(steps.mean())
        metadata["latent_steps"] = png_markdown(plot_latent_steps(steps, ranks, int(steps.max(initial=0))),
                                                "latent step counts and HR@10 per N")
    if evaluation.thinking is not None:
        from genrec_ml.eval.thinking import plot_thinking, thinking_agreement

        predicted, true = evaluation.thinking
        agreement = thinking_agreement(predicted, true, evaluation.n_coarse)
        metadata["thinking_agreement"] = dg.MetadataValue.md(agreement.round(4).to_markdown(index=False))
        metadata["thinking_clusters"] = png_markdown(plot_thinking(predicted, true, evaluation.n_coarse),
                                                     "thinking-token clusters vs true clusters")
        sample = pd.DataFrame({f"level {level} (thinking / true)": [f"{p} / {t}" for p, t in
                                                                    zip(predicted[:10, level], true[:10, level],
                                                                        strict=True)]
                               for level in range(predicted.shape[1])})
        metadata["thinking_sample_users"] = dg.MetadataValue.md(sample.to_markdown())
    return metadata


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=["splits", "items"],
          description="Metrics of the popularity recommender (most frequent training targets first) for every "
                      "split scheme: the floor every model must beat on validation NDCG@10.")
def popularity_metrics(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    dataset = context.partition_key
    with warehouse.connect(read_only=True) as con:
        n_items = len(read_partition(con, "items", dataset))
    splits = load_splits(warehouse, dataset)
    metadata = {}
    for scheme in sorted(splits["scheme"].unique()):
        metrics = evaluate_popularity(splits, n_items, scheme)
        labels = {"model": "popularity", "variant": "default", "tokenizer": None, "profile": "none", "scheme": scheme,
                  "seed": None}
        write_metrics(warehouse, dataset, labels, metrics, None, context.run_id)
        metadata[f"metrics_{scheme}"] = dg.MetadataValue.md(metrics_markdown(metrics))
    return dg.MaterializeResult(metadata=metadata)
