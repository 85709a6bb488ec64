"""Train and evaluate one model without Dagster: export its inputs from the warehouse into a bundle,
run it wherever torch, numpy, pandas and transformers exist (a leased GPU machine), and record the
figures back into the warehouse's `metrics` table.

    python -m genrec_ml.cli export --dataset amazon-beauty --tokenizer rq_vae --out .genrec/bundles/beauty-rq_vae
    python -m genrec_ml.cli train --bundle .genrec/bundles/beauty-rq_vae --model tiger --profile paper \\
        --workdir .genrec/runs/tiger-paper
    python -m genrec_ml.cli record --workdir .genrec/runs/tiger-paper

`train` resumes a killed run from `<workdir>/training/last.pt` when called again with the same
settings; it leaves best.pt, run.json, metrics.csv and curves.jsonl (genrec_ml/tracking.py) in the
workdir, and logs the run to MLflow where mlflow imports and a tracking URI is set (--tracking-uri,
default $MLFLOW_TRACKING_URI). `record` appends metrics.csv once (its evaluation id is remembered),
so the leaderboard compares it with the asset runs, with the run's MLflow id; a run trained without
MLflow (the GPU machine) is logged to MLflow then, from its workdir.
`reproduce` runs `train` for many models x seeds on their bundles (`export-bundles`), and
`record --runs` records all of its workdirs (genrec_ml/reproduce.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from genrec_ml import preflight, reproduce, tracking
from genrec_ml.derived import derive_experiment
from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.evaluation import (
    evaluate_experiment,
    evaluation_run_row,
    labelled_metrics,
    metric_labels,
    metrics_by_split,
)
from genrec_ml.experiments import Experiment, read_run_info, train_experiment, write_run_info
from genrec_ml.inputs import Bundle, bundle_cot, export_bundle, read_bundle
from genrec_ml.progress import ProgressFile, plain, training_progress
from genrec_ml.train.distributed import is_main_process
from genrec_ml.train.loop import Callback

RUNTIME = Path(".genrec")
METRICS_FILE = "metrics.csv"
RANKS_FILE = "ranks.parquet"  # test users' target ranks, for `evaluation_ranks`
METRIC_COLUMNS = ("split", "metric", "k", "value")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.command(args)
    except (GenrecConfigError, GenrecDataError, LookupError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m genrec_ml.cli", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(required=True, metavar="{export,train,record,reproduce,export-bundles}")

    export = commands.add_parser("export", help="write a dataset's splits and catalog into a bundle folder")
    export.add_argument("--dataset", required=True)
    export.add_argument("--tokenizer", default=None, help="codebook variant (rq_vae, coba_rqvae, ...); "
                        "leave out for item-id models")
    export.add_argument("--scheme", default="loo", help="split scheme: loo or ratio")
    export.add_argument("--n-coarse", type=int, default=None, help="S²GR: re-cluster the codes at this C")
    export.add_argument("--out", required=True, type=Path, help="bundle folder (replaced)")
    export.add_argument("--no-cot", dest="cot", action="store_false",
                        help="leave the teacher CoTs (cot_texts) out even where the warehouse has them: only "
                             "LASAR and the explicit-CoT baseline read them")
    add_warehouse_arguments(export)
    export.set_defaults(command=run_export)

    train = commands.add_parser("train", help="train on a bundle, then rank valid and test")
    train.add_argument("--bundle", required=True, type=Path)
    train.add_argument("--workdir", required=True, type=Path, help="checkpoints, run.json and metrics.csv")
    train.add_argument("--model", default="tiger",
                       help="tiger, s2gr, care, reg4rec, sasrec, gru4rec, caser, bert4rec, rearec")
    train.add_argument("--variant", default="default", help="label of the metrics rows")
    train.add_argument("--profile", default="smoke",
                       help="smoke (minutes on a CPU), cpu (<= 45 min on one core) or paper")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--model-settings", type=json_object, default={}, help='JSON, e.g. \'{"dropout": 0.2}\'')
    train.add_argument("--train-settings", type=json_object, default={}, help='JSON, e.g. \'{"device": "cuda"}\'')
    train.add_argument("--eval-ks", type=int, nargs="+", default=[5, 10, 20], help="cut-offs of the metrics")
    train.add_argument("--eval-beam-width", type=int, default=20, help="beams of the final beam search")
    train.add_argument("--eval-batch-size", type=int, default=256)
    train.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default")
    train.add_argument("--evaluate-only", action="store_true", help="rank with the workdir's best.pt")
    train.add_argument("--start-from", type=Path, default=None,
                       help="a finished run's workdir whose weights this run starts from instead of training "
                            "(settings may differ only after pre-training; see genrec_ml.derived)")
    train.add_argument("--start-stage", choices=("pretrained", "final"), default="pretrained",
                       help="with --start-from: its weights before post-training, or its best.pt")
    train.add_argument("--init-from", type=Path, default=None,
                       help="another model's finished workdir (or checkpoint) whose weights start this one where "
                            "they fit: LASAR's Stage 2 and the explicit-CoT baseline from MiniOneRec's")
    add_tracking_arguments(train)
    train.set_defaults(command=run_train)

    record = commands.add_parser("record", help="append a trained workdir's metrics.csv to the `metrics` table")
    target = record.add_mutually_exclusive_group(required=True)
    target.add_argument("--workdir", type=Path)
    target.add_argument("--runs", type=Path, help="every finished workdir under this folder (reproduce's --out); "
                        "evaluations already recorded are skipped")
    add_warehouse_arguments(record)
    add_tracking_arguments(record)
    record.set_defaults(command=run_record_runs)
    add_reproduce_commands(commands)
    return top


def add_reproduce_commands(commands) -> None:
    reproduce = commands.add_parser("reproduce", help="train and evaluate models x seeds on their bundles, several "
                                    "at a time; again: skips finished runs, resumes killed ones")
    reproduce.add_argument("--bundles", required=True, type=Path, help="folder of bundle folders (export-bundles)")
    reproduce.add_argument("--models", required=True, type=names, help="asset prefixes: tiger,s2gr,care,sasrec,...")
    reproduce.add_argument("--profile", default="smoke",
                           help="smoke (minutes on a CPU), cpu (<= 45 min on one core) or paper")
    reproduce.add_argument("--seeds", type=seeds, default=[0, 1, 2], help="seeds per model (default 0,1,2)")
    reproduce.add_argument("--out", required=True, type=Path, help="runs folder: <out>/<dataset>/<model>/seed<S>/")
    reproduce.add_argument("--datasets", type=names, default=None, help="default: every dataset the bundles hold")
    reproduce.add_argument("--scheme", default="loo", help="split scheme of the bundles to use")
    reproduce.add_argument("--device", default=None, help="cuda, cpu, ...; default: cuda when there is one")
    reproduce.add_argument("--parallel", type=int, default=0, help="runs at a time; 0 = all on CUDA, 1 on a CPU")
    reproduce.add_argument("--threads", type=int, default=0, help="torch CPU threads per run; 0 = cores / parallel")
    reproduce.add_argument("--model-settings", type=json_object, default={}, help='JSON for every model, keys '
                           'naming a model or prefix scope to it: \'{"dropout": 0.1, "sasrec": {"d_model": 32}}\'')
    reproduce.add_argument("--train-settings", type=json_object, default={}, help="JSON, scoped the same way")
    reproduce.add_argument("--dry-run", action="store_true", help="check bundles, models, device, disk; train nothing")
    reproduce.add_argument("--report-seconds", type=float, default=30.0, help="status table every this many seconds")
    reproduce.set_defaults(command=run_reproduce)

    bundles = commands.add_parser("export-bundles", help="write every bundle the given models need into one folder")
    bundles.add_argument("--dataset", required=True)
    bundles.add_argument("--models", required=True, type=names, help="asset prefixes: tiger,s2gr,care,sasrec,...")
    bundles.add_argument("--scheme", default="loo", help="split scheme: loo or ratio")
    bundles.add_argument("--out", required=True, type=Path, help="folder of <dataset>-<tokenizer>[-c<C>] bundles")
    add_warehouse_arguments(bundles)
    bundles.set_defaults(command=run_export_bundles)


def names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def seeds(text: str) -> list[int]:
    try:
        return [int(seed) for seed in names(text)]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"needs comma-separated integers, got {text!r}") from err


def add_warehouse_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--warehouse", type=Path,
                         default=Path(os.environ.get("GENREC_WAREHOUSE", RUNTIME / "warehouse.duckdb")))
    command.add_argument("--artifacts", type=Path,
                         default=Path(os.environ.get("GENREC_ARTIFACTS", RUNTIME / "artifacts")),
                         help="the codebook assets' files (<artifacts>/<dataset>/<tokenizer>/)")


def add_tracking_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or None,
                         help="MLflow store, e.g. sqlite:///.genrec/mlflow.db (default $MLFLOW_TRACKING_URI); "
                         "tracking is off without one, or where mlflow is not installed")
    command.add_argument("--tracking-artifacts", type=Path,
                         default=os.environ.get("GENREC_MLFLOW_ARTIFACTS") or None,
                         help="artifact folder of the `training` experiment if this creates it "
                         "(default $GENREC_MLFLOW_ARTIFACTS, else mlflow-artifacts beside a sqlite store)")


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"needs a JSON object, got {text!r}")
    return value


def run_export(args: argparse.Namespace) -> int:
    from genrec_ml import warehouse

    if not args.warehouse.is_file():
        raise FileNotFoundError(f"no warehouse {args.warehouse}; materialize the dataset first or pass --warehouse")
    folder = args.artifacts / args.dataset / args.tokenizer if args.tokenizer else None
    with warehouse.connect(args.warehouse, read_only=True) as con:
        out = export_bundle(con, folder, args.dataset, args.tokenizer, args.out, args.scheme, args.n_coarse,
                            args.cot)
    size = sum(path.stat().st_size for path in out.iterdir())
    print(f"bundle {out}: {args.dataset}, codebook {args.tokenizer}, scheme {args.scheme}, {size / 1e6:.1f} MB")
    return 0


def run_train(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = read_bundle(args.bundle)
    experiment = Experiment(
        model=args.model, variant=args.variant, profile=args.profile, tokenizer=bundle.meta["tokenizer"],
        scheme=bundle.meta["scheme"], model_overrides=args.model_settings, train_overrides=args.train_settings,
        seed=args.seed, eval_ks=tuple(args.eval_ks), eval_beam_width=args.eval_beam_width,
    )
    workdir = args.workdir
    if args.evaluate_only:
        info = read_run_info(workdir)
        experiment = stored_experiment(info)
        run = tracking.resume_run(args.tracking_uri, info.get("mlflow_run_id"), tolerant=True)
    else:
        info, run = train_tracked(args, experiment, bundle)
        if not is_main_process():  # torchrun: rank 0 alone ranks valid and test and writes the workdir
            return 0
    with tracking.ended_on_error(run):
        evaluation = evaluate_experiment(workdir / "best.pt", bundle.splits, bundle.catalog, experiment,
                                         batch_size=args.eval_batch_size)
    metrics = evaluation.metrics[list(METRIC_COLUMNS)]
    info = {**info, "dataset": bundle.dataset, "bundle": bundle.meta, "evaluation_id": uuid.uuid4().hex,
            "rank_seconds": evaluation.seconds}
    if not args.evaluate_only and args.init_from is not None and args.init_from.is_dir():
        # which evaluation of the init run this one started from: `reproduce` retrains it when that changes
        info["initialised_from"] = {**info.get("initialised_from", {}),
                                    "evaluation_id": read_run_info(args.init_from).get("evaluation_id")}
    if run is not None:
        info["mlflow_run_id"] = tracking.log_outcome(run, workdir, info, metrics, checkpoint=not args.evaluate_only)
    write_run_info(workdir, info)
    write_csv(metrics, workdir / METRICS_FILE)
    write_ranks(evaluation.ranks, workdir / RANKS_FILE)
    print(metrics_by_split(evaluation.metrics).to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


def train_tracked(args: argparse.Namespace, experiment: Experiment,
                  bundle: Bundle) -> tuple[dict, tracking.MlflowRun | None]:
    """Train with progress.json and curves.jsonl kept current, logging to MLflow when tracking is on;
    returns run.json's training facts and the MLflow run (None when off) the evaluation ends."""
    workdir = args.workdir
    init_from = checkpoint_of(args.init_from)
    cot = bundle_cot(bundle, experiment.model, stage1_of(args, init_from), experiment.train_config().device)
    if not is_main_process():  # torchrun: rank 0 alone writes progress.json and the curves, and tracks
        return train_experiment(experiment, bundle.splits, bundle.catalog, workdir, init_from=init_from,
                                cot=cot).info, None
    progress = training_progress(workdir, experiment, bundle.splits)
    curves = tracking.CurvesFile(workdir / tracking.CURVES_FILE, {"experiment": asdict(experiment),
                                                                  "bundle": bundle.meta},
                                 resume=(workdir / "training" / "last.pt").is_file())
    run = start_tracking(args, experiment, bundle.dataset, curves)
    curves.start(run.run_id if run else None)
    logger = tracking.CurveLogger(curves.append, *([run.log_point] if run else []), skip=curves.keys)
    start = (args.start_from, args.start_stage) if args.start_from is not None else None
    with tracking.ended_on_error(run):
        return train_and_report(experiment, bundle, workdir, progress, logger, start=start, init_from=init_from,
                                cot=cot), run


def checkpoint_of(path: Path | None) -> Path | None:
    """--init-from's checkpoint: the file, or a finished workdir's best.pt."""
    if path is None:
        return None
    checkpoint = path / "best.pt" if path.is_dir() else path
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint {checkpoint}: --init-from takes a finished run's workdir or "
                                "its best.pt")
    return checkpoint


def stage1_of(args: argparse.Namespace, init_from: Path | None) -> Path | None:
    """The Stage-1 checkpoint LASAR's anchors come from: --init-from, or the one the --start-from run started from."""
    if init_from is not None or args.start_from is None:
        return init_from
    started = read_run_info(args.start_from).get("initialised_from") or {}
    return Path(started["path"]) if "path" in started else None


def start_tracking(args: argparse.Namespace, experiment: Experiment, dataset: str,
                   curves: tracking.CurvesFile) -> tracking.MlflowRun | None:
    """The MLflow run of this training: the interrupted process's run again, or a new one given the
    settings and the curves so far; None (and why, if a URI was set) when tracking is off."""
    off = tracking.tracking_state(args.tracking_uri)
    if off is not None:
        if args.tracking_uri:
            print(f"tracking off: {off}; the curves are in {curves.path}, `record` logs the run to MLflow")
        return None
    stored = plain(asdict(experiment))
    run = tracking.start_run(args.tracking_uri, args.tracking_artifacts, tracking.run_name(stored, dataset),
                             tracking.run_tags(stored, dataset, "cli train"), resume_id=curves.mlflow_run_id,
                             tolerant=True, on_failure=lambda: curves.start(None))
    run.log_params(tracking.run_params(stored, asdict(experiment.train_config())))
    if not run.resumed:
        run.log_points(curves.previous.points)
    print(f"tracking: MLflow run {run.run_id} in {args.tracking_uri}")
    return run


def train_and_report(experiment: Experiment, bundle: Bundle, workdir: Path, progress: ProgressFile,
                     *callbacks: Callback, start: tuple[Path, str] | None = None, init_from: Path | None = None,
                     cot=None) -> dict:
    """Train (or, with `start` = (source workdir, stage), start from that run's weights) and say how it went;
    `init_from` and `cot` as `train_experiment`'s."""
    callback = tracking.fan_out(progress, *callbacks)
    if start is not None:
        trained = derive_experiment(experiment, bundle.splits, bundle.catalog, workdir, *start, callback=callback,
                                    cot=cot)
        progress.evaluating()
        post = trained.post_training
        print(f"started from the {start[1]} weights of {start[0]}"
              + (f"; post-trained {post.steps} steps in {post.seconds:.0f} s" if post is not None else ""))
        return trained.info
    trained = train_experiment(experiment, bundle.splits, bundle.catalog, workdir, callback=callback,
                               init_from=init_from, cot=cot)
    progress.evaluating()
    print(f"trained {trained.result.steps} steps in {trained.result.seconds:.0f} s; best valid "
          + ", ".join(f"{k} {v:.4f}" for k, v in trained.result.best_metrics.items() if "@" in k or k == "mrr"))
    return trained.info


def run_record(args: argparse.Namespace) -> int:
    from genrec_ml import warehouse

    info = read_run_info(args.workdir)
    if "evaluation_id" not in info:
        raise GenrecDataError("run.json has no evaluation; run `train` (or `train --evaluate-only`) first",
                              path=args.workdir / "run.json")
    metrics = read_metrics(args.workdir / METRICS_FILE)
    experiment = stored_experiment(info)
    if is_recorded(args.warehouse, info["evaluation_id"]):
        raise GenrecDataError(f"evaluation {info['evaluation_id']} is already in {args.warehouse}",
                              path=args.workdir / METRICS_FILE)
    run_id = info.get("mlflow_run_id") or track_workdir(args, info, metrics)
    rows = labelled_metrics(metrics, info["dataset"], metric_labels(experiment), info["evaluation_id"], run_id)
    run = evaluation_run_row(info["dataset"], info["evaluation_id"], info)
    ranks = read_ranks(args.workdir / RANKS_FILE)
    if ranks is not None:
        ranks = ranks.assign(dataset=info["dataset"], evaluation_id=info["evaluation_id"])
    with warehouse.connect(args.warehouse) as con:
        written = warehouse.append_evaluation(con, rows, run, ranks)
    print(f"recorded {written} rows of {experiment.model} ({experiment.variant}, {experiment.profile}) on "
          f"{info['dataset']} into {args.warehouse}" + (f", MLflow run {run_id}" if run_id else ""))
    return 0


def is_recorded(store: Path, evaluation_id: str) -> bool:
    """Whether the warehouse's `metrics` already hold this evaluation (a missing warehouse holds none)."""
    from genrec_ml import warehouse

    if not store.is_file():
        return False
    with warehouse.connect(store, read_only=True) as con:
        return warehouse.table_exists(con, "metrics") and bool(int(warehouse.query(
            con, "metrics_evaluation_count", evaluation_id=evaluation_id)["n"].iloc[0]))


def track_workdir(args: argparse.Namespace, info: dict, metrics: pd.DataFrame) -> str | None:
    """Log a run trained without tracking (the GPU machine) to MLflow from its workdir, once: its id
    goes into run.json. None when tracking is off here too."""
    run_id = tracking.log_workdir(args.tracking_uri, args.tracking_artifacts, args.workdir, info, metrics)
    if run_id:
        write_run_info(args.workdir, {**info, "mlflow_run_id": run_id})
        print(f"logged {args.workdir} to MLflow as run {run_id}")
    return run_id


def run_record_runs(args: argparse.Namespace) -> int:
    """`record --runs`: every finished workdir under a folder, each evaluation once (recorded ones are skipped)."""
    if args.runs is None:
        return run_record(args)
    workdirs = sorted(path.parent for path in args.runs.rglob("run.json"))
    if not workdirs:
        raise FileNotFoundError(f"no run.json under {args.runs}; pass reproduce's --out folder")
    recorded, failed = 0, 0
    for workdir in workdirs:
        info = read_run_info(workdir)
        if "evaluation_id" not in info or not (workdir / METRICS_FILE).is_file():
            print(f"skip {workdir}: not evaluated yet")
            continue
        if is_recorded(args.warehouse, info["evaluation_id"]):
            print(f"skip {workdir}: evaluation {info['evaluation_id']} is already recorded")
            continue
        try:
            run_record(argparse.Namespace(**{**vars(args), "workdir": workdir}))
            recorded += 1
        except (GenrecConfigError, GenrecDataError, LookupError, TypeError) as err:
            print(f"error: {workdir}: {err}", file=sys.stderr)
            failed += 1
    print(f"recorded {recorded} evaluation{'s' * (recorded != 1)} from {args.runs}"
          + (f"; {failed} failed" if failed else ""))
    return 2 if failed else 0


def run_reproduce(args: argparse.Namespace) -> int:
    runs = reproduce.plan_runs(args.bundles, args.models, args.seeds, args.profile, args.out, datasets=args.datasets,
                               scheme=args.scheme, model_settings=args.model_settings,
                               train_settings=args.train_settings, device=args.device)
    pool = reproduce.Pool.resolve(args.device, args.parallel, args.threads, runs)
    if args.dry_run:
        return preflight.dry_run(runs, pool, args.out)
    return reproduce.run_all(runs, pool, args.out, args.report_seconds)


def run_export_bundles(args: argparse.Namespace) -> int:
    """One bundle per distinct catalog the models train on: codebook, S²GR's C, or item ids only; with the
    teacher CoTs only where one of its models reads them."""
    failed = []
    for (tokenizer, n_coarse), cot in reproduce.needed_bundles(args.models).items():
        out = args.out / reproduce.bundle_name(args.dataset, tokenizer, n_coarse, args.scheme)
        try:
            run_export(argparse.Namespace(**{**vars(args), "tokenizer": tokenizer, "n_coarse": n_coarse, "out": out,
                                             "cot": cot}))
        except (GenrecConfigError, GenrecDataError, LookupError) as err:
            print(f"error: {out}: {err}", file=sys.stderr)
            failed.append(out.name)
    if failed:
        print(f"{len(failed)} bundle(s) not written: {', '.join(failed)}", file=sys.stderr)
        return 2
    print(f"bundles in {args.out}; train them with: python -m genrec_ml.cli reproduce --bundles {args.out} "
          f"--models {','.join(args.models)} --out <runs>")
    return 0


def stored_experiment(info: dict) -> Experiment:
    return Experiment(**{**info["experiment"], "eval_ks": tuple(info["experiment"]["eval_ks"])})


def read_metrics(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise GenrecDataError("no metrics file; run `train` first", path=path)
    metrics = pd.read_csv(path, float_precision="round_trip")
    for column in METRIC_COLUMNS:
        if column not in metrics.columns:
            raise GenrecDataError("metrics file lacks this column", path=path, field=column)
    bad = metrics["value"].isna() | metrics["metric"].isna()
    if bad.any():
        raise GenrecDataError("empty metric or value", path=path, line=int(bad.to_numpy().argmax()) + 2)
    return metrics


def write_ranks(ranks: pd.DataFrame, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    ranks.to_parquet(partial, index=False)
    os.replace(partial, path)


def read_ranks(path: Path) -> pd.DataFrame | None:
    """The workdir's per-user test ranks; None for workdirs trained before ranks were kept."""
    if not path.is_file():
        return None
    ranks = pd.read_parquet(path)
    missing = [c for c in ("split", "user_index", "target_item_index", "rank") if c not in ranks.columns]
    if missing:
        raise GenrecDataError("ranks file lacks this column", path=path, field=missing[0])
    return ranks


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    frame.to_csv(partial, index=False, float_format="%.17g")  # every digit: record stores what was measured
    os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(main())
