"""Train and evaluate one model without Dagster: export its inputs from the warehouse into a bundle,
run it wherever torch, numpy, pandas and transformers exist (a leased GPU machine), and record the
figures back into the warehouse's `metrics` table.

    python -m genrec_ml.cli export --dataset amazon-beauty --tokenizer rq_vae --out .genrec/bundles/beauty-rq_vae
    python -m genrec_ml.cli train --bundle .genrec/bundles/beauty-rq_vae --model tiger --profile paper \\
        --workdir .genrec/runs/tiger-paper
    python -m genrec_ml.cli record --workdir .genrec/runs/tiger-paper

`train` resumes a killed run from `<workdir>/training/last.pt` when called again with the same
settings; it leaves best.pt, run.json and metrics.csv in the workdir. `record` appends metrics.csv
once (its evaluation id is remembered), so the leaderboard compares it with the asset runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

import pandas as pd
import torch

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.experiments import (
    Experiment,
    evaluate_experiment,
    labelled_metrics,
    metric_labels,
    metrics_by_split,
    read_run_info,
    train_experiment,
    write_run_info,
)
from genrec_ml.inputs import export_bundle, read_bundle

RUNTIME = Path(".genrec")
METRICS_FILE = "metrics.csv"
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
    commands = top.add_subparsers(required=True, metavar="{export,train,record}")

    export = commands.add_parser("export", help="write a dataset's splits and catalog into a bundle folder")
    export.add_argument("--dataset", required=True)
    export.add_argument("--tokenizer", default=None, help="codebook variant (rq_vae, coba_rqvae, ...); "
                        "leave out for item-id models")
    export.add_argument("--scheme", default="loo", help="split scheme: loo or ratio")
    export.add_argument("--n-coarse", type=int, default=None, help="S²GR: re-cluster the codes at this C")
    export.add_argument("--out", required=True, type=Path, help="bundle folder (replaced)")
    add_warehouse_arguments(export)
    export.set_defaults(command=run_export)

    train = commands.add_parser("train", help="train on a bundle, then rank valid and test")
    train.add_argument("--bundle", required=True, type=Path)
    train.add_argument("--workdir", required=True, type=Path, help="checkpoints, run.json and metrics.csv")
    train.add_argument("--model", default="tiger", help="tiger, s2gr, care, sasrec, gru4rec, caser, bert4rec, rearec")
    train.add_argument("--variant", default="default", help="label of the metrics rows")
    train.add_argument("--profile", default="smoke", help="smoke (minutes on a CPU) or paper")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--model-settings", type=json_object, default={}, help='JSON, e.g. \'{"dropout": 0.2}\'')
    train.add_argument("--train-settings", type=json_object, default={}, help='JSON, e.g. \'{"device": "cuda"}\'')
    train.add_argument("--eval-ks", type=int, nargs="+", default=[5, 10, 20], help="cut-offs of the metrics")
    train.add_argument("--eval-beam-width", type=int, default=20, help="beams of the final beam search")
    train.add_argument("--eval-batch-size", type=int, default=256)
    train.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default")
    train.add_argument("--evaluate-only", action="store_true", help="rank with the workdir's best.pt")
    train.set_defaults(command=run_train)

    record = commands.add_parser("record", help="append a trained workdir's metrics.csv to the `metrics` table")
    record.add_argument("--workdir", required=True, type=Path)
    add_warehouse_arguments(record)
    record.set_defaults(command=run_record)
    return top


def add_warehouse_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--warehouse", type=Path,
                         default=Path(os.environ.get("GENREC_WAREHOUSE", RUNTIME / "warehouse.duckdb")))
    command.add_argument("--artifacts", type=Path,
                         default=Path(os.environ.get("GENREC_ARTIFACTS", RUNTIME / "artifacts")),
                         help="the codebook assets' files (<artifacts>/<dataset>/<tokenizer>/)")


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
        out = export_bundle(con, folder, args.dataset, args.tokenizer, args.out, args.scheme, args.n_coarse)
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
    else:
        trained = train_experiment(experiment, bundle.splits, bundle.catalog, workdir)
        info = trained.info
        print(f"trained {trained.result.steps} steps in {trained.result.seconds:.0f} s; best valid "
              + ", ".join(f"{k} {v:.4f}" for k, v in trained.result.best_metrics.items() if "@" in k or k == "mrr"))
    evaluation = evaluate_experiment(workdir / "best.pt", bundle.splits, bundle.catalog, experiment,
                                     batch_size=args.eval_batch_size)
    evaluation_id = uuid.uuid4().hex
    write_run_info(workdir, {**info, "dataset": bundle.dataset, "bundle": bundle.meta, "evaluation_id": evaluation_id,
                             "rank_seconds": evaluation.seconds})
    write_csv(evaluation.metrics[list(METRIC_COLUMNS)], workdir / METRICS_FILE)
    print(metrics_by_split(evaluation.metrics).to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


def run_record(args: argparse.Namespace) -> int:
    from genrec_ml import warehouse

    info = read_run_info(args.workdir)
    if "evaluation_id" not in info:
        raise GenrecDataError("run.json has no evaluation; run `train` (or `train --evaluate-only`) first",
                              path=args.workdir / "run.json")
    metrics = read_metrics(args.workdir / METRICS_FILE)
    experiment = stored_experiment(info)
    rows = labelled_metrics(metrics, info["dataset"], metric_labels(experiment), info["evaluation_id"])
    with warehouse.connect(args.warehouse) as con:
        if warehouse.table_exists(con, "metrics") and int(
                warehouse.query(con, "metrics_evaluation_count", evaluation_id=info["evaluation_id"])["n"].iloc[0]):
            raise GenrecDataError(f"evaluation {info['evaluation_id']} is already in {args.warehouse}",
                                  path=args.workdir / METRICS_FILE)
        written = warehouse.append_metrics(con, rows)
    print(f"recorded {written} rows of {experiment.model} ({experiment.variant}, {experiment.profile}) on "
          f"{info['dataset']} into {args.warehouse}")
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


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    frame.to_csv(partial, index=False, float_format="%.17g")  # every digit: record stores what was measured
    os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(main())
