"""Many runs in one prepared command: every (dataset, model variant, seed) is a `cli train` process on
the bundle its codes need, several at a time, watched, and summarised at the end.

    python -m genrec_ml.cli reproduce --bundles .genrec/bundles --models tiger,s2gr,care,sasrec \\
        --profile paper --seeds 0,1,2 --out .genrec/runs --device cuda [--dry-run]

GPU time comes in short windows, so the command checks everything it can before training (every
bundle is there, `--dry-run`: every model builds and takes a training step on the device), a failed
run never stops the others, and running it again skips finished runs and resumes killed ones.
RUNS/<dataset>/<prefix>/seed<S>/ holds train.log, progress.json, run.json and metrics.csv.
Needs torch, numpy, pandas, pyarrow and transformers only: nothing here imports Dagster, DuckDB or MLflow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import pandas as pd
import torch

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.experiments import RUN_INFO, Experiment
from genrec_ml.inputs import META
from genrec_ml.model_specs import MODEL_SPECS, SPECS_BY_PREFIX, ModelSpec, spec
from genrec_ml.progress import (
    PROGRESS_FILE,
    duration,
    mark_progress,
    overall_seconds,
    plain,
    read_progress,
    remaining_seconds,
    table,
)

METRICS_FILE = "metrics.csv"  # what `cli train` leaves in a finished workdir
LOG_FILE = "train.log"
SCOPES = {s.model for s in MODEL_SPECS} | set(SPECS_BY_PREFIX)  # keys of per-model settings


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    meta: dict  # bundle.json

    @property
    def key(self) -> tuple:
        return self.meta["dataset"], self.meta["scheme"], self.meta["tokenizer"], self.meta.get("n_coarse")


@dataclass
class Run:
    dataset: str
    spec: ModelSpec
    seed: int
    bundle: BundleInfo
    workdir: Path
    experiment: Experiment
    status: str = "train"  # train | resume (training/last.pt) | retrain (settings changed) | done (skipped)
    source: Run | None = None  # the run whose weights this one starts from (ModelSpec.source)
    init: Run | None = None  # the run whose best weights initialise this one (ModelSpec.init_from)

    @property
    def waits_for(self) -> list[Run]:
        return [run for run in (self.source, self.init) if run is not None]

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.spec.prefix}/seed{self.seed}"


@dataclass(frozen=True)
class Pool:
    """Where and how many at a time the runs train."""

    device: str  # cuda, cuda:1, cpu
    parallel: int  # runs at a time
    threads: int  # torch CPU threads per run

    @classmethod
    def resolve(cls, device: str | None, parallel: int, threads: int, runs: list[Run]) -> Pool:
        """Small models share one GPU well, so on CUDA every run starts at once unless told otherwise."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        todo = sum(run.status != "done" for run in runs)
        parallel = parallel or (max(1, todo) if device.startswith("cuda") else 1)
        return cls(device, parallel, threads or max(1, (os.cpu_count() or 1) // parallel))


def bundle_name(dataset: str, tokenizer: str | None, n_coarse: int | None, scheme: str = "loo") -> str:
    """export-bundles' folder name: <dataset>-<tokenizer>[-c<C>][-<scheme>], `items` for item-id models."""
    return "-".join([dataset, tokenizer or "items", *([f"c{n_coarse}"] if n_coarse else []),
                     *([scheme] if scheme != "loo" else [])])


def needed_codes(prefixes: list[str]) -> list[tuple[str | None, int | None]]:
    """The distinct (tokenizer, n_coarse) catalogs the models train on, in the order asked."""
    return list(dict.fromkeys(spec(p).codes for p in prefixes))


def needed_bundles(prefixes: list[str]) -> dict[tuple[str | None, int | None], bool]:
    """`needed_codes`, each with whether one of its models reads the teacher CoTs (then its bundle carries them)."""
    bundles: dict[tuple[str | None, int | None], bool] = {}
    for model_spec in with_sources([spec(p) for p in prefixes]):  # the sources train on their bundles too
        bundles[model_spec.codes] = bundles.get(model_spec.codes, False) or bool(model_spec.cot)
    return bundles


def export_command(dataset: str, tokenizer: str | None, n_coarse: int | None, scheme: str, folder: Path) -> str:
    return " ".join(["python -m genrec_ml.cli export", f"--dataset {dataset}",
                     *([f"--tokenizer {tokenizer}"] if tokenizer else []),
                     *([f"--n-coarse {n_coarse}"] if n_coarse else []),
                     *([f"--scheme {scheme}"] if scheme != "loo" else []),
                     f"--out {folder / bundle_name(dataset, tokenizer, n_coarse, scheme)}"])


def export_bundles_command(dataset: str, prefixes: list[str], scheme: str, folder: Path) -> str:
    return (f"python -m genrec_ml.cli export-bundles --dataset {dataset} --models {','.join(prefixes)} "
            + (f"--scheme {scheme} " if scheme != "loo" else "") + f"--out {folder}")


def find_bundles(folder: Path) -> list[BundleInfo]:
    """Every bundle folder directly under `folder`, by its bundle.json (the data is read later)."""
    if not folder.is_dir():
        raise GenrecDataError("no such bundles folder; write one with `python -m genrec_ml.cli export-bundles`",
                              path=folder)
    found = []
    for meta_path in sorted(folder.glob(f"*/{META}")):
        if meta_path.parent.name.endswith(".partial"):  # an export that never finished
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise GenrecDataError(f"not JSON: {err}", path=meta_path) from err
        for key in ("dataset", "tokenizer", "scheme"):
            if key not in meta:
                raise GenrecDataError("bundle metadata lacks this key", path=meta_path, field=key)
        found.append(BundleInfo(meta_path.parent, meta))
    return found


def scoped_settings(settings: dict, model_spec: ModelSpec) -> dict:
    """Entries for every model, then those under its registry name, then under its prefix:
    '{"dropout": 0.1, "sasrec": {"d_model": 16}}' sets dropout everywhere and d_model for SASRec only."""
    common = {k: v for k, v in settings.items() if k not in SCOPES}
    for scope in (k for k in settings if k in SCOPES):
        if not isinstance(settings[scope], dict):
            raise GenrecConfigError(scope, f"settings of one model need a JSON object, got {settings[scope]!r}")
    for scope in dict.fromkeys((model_spec.model, model_spec.prefix)):
        common.update(settings.get(scope, {}))
    return common


def plan_runs(bundles_dir: Path, prefixes: list[str], seeds: list[int], profile: str, out: Path, *,
              datasets: list[str] | None = None, scheme: str = "loo", model_settings: dict | None = None,
              train_settings: dict | None = None, device: str | None = None) -> list[Run]:
    """Every (dataset, model, seed) run and its bundle; a missing bundle is an error naming its export command."""
    specs = with_sources([spec(p) for p in prefixes])
    if not specs or not seeds:
        raise GenrecConfigError("models" if not specs else "seeds", "name at least one")
    by_key: dict[tuple, BundleInfo] = {}
    for bundle in find_bundles(bundles_dir):
        if bundle.key in by_key:
            raise GenrecDataError(f"two bundles of the same dataset and codes: {by_key[bundle.key].path} and "
                                  f"{bundle.path}; remove one", path=bundles_dir)
        by_key[bundle.key] = bundle
    datasets = list(datasets or sorted({key[0] for key in by_key if key[1] == scheme}))
    if not datasets:
        raise GenrecDataError(f"no bundles of scheme {scheme}; write them where the warehouse is with:\n  "
                              + export_bundles_command("<dataset>", prefixes, scheme, bundles_dir), path=bundles_dir)
    runs, missing = [], {}
    for dataset in datasets:
        for model_spec in specs:
            bundle = by_key.get((dataset, scheme, *model_spec.codes))
            if bundle is None or (model_spec.cot and not bundle.meta.get("cot_rows")):
                # LASAR and the explicit-CoT baseline need the teacher CoTs in the bundle (their anchors are
                # computed from them where they train)
                missing.setdefault((dataset, *model_spec.codes), []).append(model_spec.prefix)
                continue
            train = {**scoped_settings(train_settings or {}, model_spec), **({"device": device} if device else {})}
            models = scoped_settings(model_settings or {}, model_spec)
            for seed in seeds:
                experiment = model_spec.experiment(profile=profile, seed=seed, scheme=scheme, model_settings=models,
                                                   train_settings=train)
                runs.append(Run(dataset, model_spec, seed, bundle, out / dataset / model_spec.prefix / f"seed{seed}",
                                experiment))
    if missing:
        lines = [f"  {', '.join(users)} need{'s' * (len(users) == 1)} it: "
                 + export_command(dataset, tokenizer, n_coarse, scheme, bundles_dir)
                 for (dataset, tokenizer, n_coarse), users in missing.items()]
        cot = " (LASAR's and the explicit-CoT models' with the teacher CoTs: materialize cot_texts first)" if any(
            spec(p).cot for users in missing.values() for p in users) else ""
        raise GenrecDataError(f"bundles missing{cot}; write them where the warehouse is with\n" + "\n".join(lines)
                              + "\n  or all at once: "
                              + "; ".join(export_bundles_command(d, prefixes, scheme, bundles_dir) for d in datasets),
                              path=bundles_dir)
    by_name = {run.name: run for run in runs}
    for run in runs:
        if run.spec.source:
            run.source = by_name[f"{run.dataset}/{run.spec.source}/seed{run.seed}"]
        if run.spec.init_from:
            run.init = by_name[f"{run.dataset}/{run.spec.init_from}/seed{run.seed}"]
        run.status = run_status(run)
    return runs


def with_sources(specs: list[ModelSpec]) -> list[ModelSpec]:
    """`specs` with the variants each one starts from (its source, its init_from, theirs in turn) placed before
    it when not asked for: they have to be trained first."""
    planned: list[ModelSpec] = []

    def add(model_spec: ModelSpec) -> None:
        for before in (model_spec.source, model_spec.init_from):
            if before and spec(before) not in planned:
                add(spec(before))
        if model_spec not in planned:
            planned.append(model_spec)

    for model_spec in specs:
        add(model_spec)
    return planned


def run_status(run: Run) -> str:
    """done: metrics.csv and run.json of these very settings and bundle; else how training would start."""
    try:
        info = json.loads((run.workdir / RUN_INFO).read_text())
    except (OSError, json.JSONDecodeError):
        info = {}
    if "evaluation_id" in info and (run.workdir / METRICS_FILE).is_file():
        same = (plain(info.get("experiment")) == plain(asdict(run.experiment))
                and plain(info.get("bundle")) == plain(run.bundle.meta) and _same_source(run, info))
        return "done" if same else "retrain"
    return "resume" if (run.workdir / "training" / "last.pt").is_file() else "train"


def _same_source(run: Run, info: dict) -> bool:
    """A derived (or initialised) run is current only while its source (and init run) is current and the
    evaluation it started from (plan_runs sets their status first: they are planned before it)."""
    for before, key in ((run.source, "derived_from"), (run.init, "initialised_from")):
        if before is None:
            continue
        if before.status != "done":
            return False
        try:
            stored = json.loads((before.workdir / RUN_INFO).read_text())
        except (OSError, json.JSONDecodeError):
            return False
        if (info.get(key) or {}).get("evaluation_id") != stored.get("evaluation_id"):
            return False
    return True


def train_command(run: Run, threads: int) -> list[str]:
    e = run.experiment
    return [sys.executable, "-m", "genrec_ml.cli", "train", "--bundle", str(run.bundle.path.resolve()),
            "--model", e.model, "--variant", e.variant, "--profile", e.profile, "--seed", str(e.seed),
            "--workdir", str(run.workdir.resolve()), "--threads", str(threads),
            "--model-settings", json.dumps(e.model_overrides), "--train-settings", json.dumps(e.train_overrides),
            "--eval-ks", *[str(k) for k in e.eval_ks], "--eval-beam-width", str(e.eval_beam_width),
            *(["--start-from", str(run.source.workdir.resolve()), "--start-stage", run.spec.source_stage]
              if run.source is not None else []),
            *(["--init-from", str(run.init.workdir.resolve())] if run.init is not None else [])]


def describe(runs: list[Run], pool: Pool) -> str:
    counts = {status: sum(r.status == status for r in runs) for status in ("train", "resume", "retrain", "done")}
    statuses = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    return (f"{len(runs)} run{'s' * (len(runs) != 1)} ({statuses}) on {pool.device}, {pool.parallel} at a time, "
            f"{pool.threads} torch thread{'s' * (pool.threads > 1)} each")


@dataclass
class Job:
    run: Run
    state: str = "queued"  # queued, running, done, failed, skipped
    process: subprocess.Popen | None = None
    log: IO | None = None
    launched: float = 0.0  # wall-clock time, to tell this attempt's progress.json from an older one
    started: float | None = None  # monotonic
    ended: float | None = None
    returncode: int | None = None


def run_all(runs: list[Run], pool: Pool, out: Path, report_seconds: float = 30.0, poll_seconds: float = 0.5) -> int:
    """Train every run not done, `pool.parallel` at a time; 0 when all end with metrics, 1 if any failed."""
    jobs = [Job(run, "skipped" if run.status == "done" else "queued") for run in runs]
    print(describe(runs, pool), flush=True)
    if any(job.state == "skipped" for job in jobs):
        print(f"skipping {sum(job.state == 'skipped' for job in jobs)} runs already done with these settings")
    queue, active = deque(job for job in jobs if job.state == "queued"), []
    by_run = {id(job.run): job for job in jobs}
    restore = _stop_on_sigterm()
    next_report = time.monotonic() + report_seconds
    try:
        while queue or active:
            while len(active) < pool.parallel and (job := _next_ready(queue, by_run)) is not None:
                active.append(_launch(job, pool.threads))
            for job in [job for job in active if job.process.poll() is not None]:
                _finish(job)
                active.remove(job)
            if time.monotonic() >= next_report and (queue or active):
                print(status_table(jobs, pool.parallel), flush=True)
                next_report = time.monotonic() + report_seconds
            time.sleep(poll_seconds if active else 0)
    except KeyboardInterrupt:
        for job in active:
            _stop(job)
        print(status_table(jobs, pool.parallel))
        print(results(jobs))
        print("interrupted: run the same command again to resume (killed runs continue from their last.pt)")
        return 130
    finally:
        restore()
    print(status_table(jobs, pool.parallel))
    print(results(jobs))
    print(f"\nrecord the figures (here, or where the warehouse is after copying {out} there):\n"
          f"  python -m genrec_ml.cli record --runs {out}")
    failed = [job for job in jobs if job.state == "failed"]
    for job in failed:
        print(f"failed: {job.run.name} (exit {job.returncode}): {_last_line(job.run.workdir / LOG_FILE)}\n"
              f"  log: {job.run.workdir / LOG_FILE}", file=sys.stderr)
    return 1 if failed else 0


def _next_ready(queue: deque, by_run: dict[int, Job]) -> Job | None:
    """The first queued job whose source and init runs (if any) have finished, taken off the queue; jobs
    whose source or init run failed fail too. Those are planned before what starts from them
    (`with_sources`), so some job is always ready while the queue is not empty and nothing runs."""
    for job in list(queue):
        before = [by_run[id(run)] for run in job.run.waits_for if id(run) in by_run]
        failed = next((b for b in before if b.state == "failed"), None)
        if failed is not None:
            queue.remove(job)
            job.state = "failed"
            print(f"not run: {job.run.name} starts from {failed.run.name}, which failed", file=sys.stderr)
        elif all(b.state in ("done", "skipped") for b in before):
            queue.remove(job)
            return job
    return None


def _launch(job: Job, threads: int) -> Job:
    run = job.run
    run.workdir.mkdir(parents=True, exist_ok=True)
    command = train_command(run, threads)
    job.log = open(run.workdir / LOG_FILE, "a")  # closed by _finish when the process ends
    job.log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
    job.log.flush()
    job.launched, job.started, job.state = time.time(), time.monotonic(), "running"
    job.process = subprocess.Popen(command, stdout=job.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=_child_env(threads))
    return job


def _child_env(threads: int) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])  # genrec_ml importable whatever the working directory
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.setdefault("TQDM_MININTERVAL", "30")  # a progress bar line every 30 s in train.log, not ten a second
    return env


def _finish(job: Job, interrupted: bool = False) -> None:
    job.returncode, job.ended = job.process.returncode, time.monotonic()
    job.log.close()
    ok = job.returncode == 0 and (job.run.workdir / METRICS_FILE).is_file() and not interrupted
    job.state = "done" if ok else "failed"
    extra = {} if ok else {"returncode": job.returncode, "log": str(job.run.workdir / LOG_FILE),
                           "interrupted": interrupted}
    mark_progress(job.run.workdir / PROGRESS_FILE, job.state, **extra)


def _stop(job: Job) -> None:
    job.process.terminate()
    try:
        job.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        job.process.kill()
        job.process.wait()
    _finish(job, interrupted=True)


def _stop_on_sigterm():
    """`timeout` and schedulers stop with SIGTERM: handle it like Ctrl-C, so the children stop too."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        # once: `timeout` signals its command and then the whole process group, this process included, so a
        # second SIGTERM would otherwise break off the stopping of the runs and the final table
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def status_table(jobs: list[Job], slots: int) -> str:
    """One line per run: state, step/total, best valid NDCG@10, elapsed, ETA; then the overall ETA."""
    now, clock = time.time(), time.monotonic()
    rows, running, queued, totals = [], [], [], {}
    for job in jobs:
        progress = read_progress(job.run.workdir / PROGRESS_FILE) or {}
        if job.state in ("queued", "running") and progress.get("updated_at", 0) < job.launched:
            progress = {}  # an earlier attempt's file
        if progress.get("steps_per_second") and progress.get("total_steps"):
            totals[(job.run.dataset, job.run.spec.prefix)] = progress["total_steps"] / progress["steps_per_second"]
        state = (progress.get("state") or "starting") if job.state == "running" else job.state
        eta = remaining_seconds(progress, now) if job.state == "running" else None
        if job.state == "running":
            running.append(eta)
        best = (progress.get("best") or {}).get("ndcg@10")
        elapsed = ((job.ended or clock) - job.started) if job.started is not None else None
        step = f"{progress['step']}/{progress.get('total_steps') or '?'}" if "step" in progress else "-"
        rows.append([job.run.name, state, step, f"{best:.4f}" if best is not None else "-",
                     duration(elapsed) if elapsed is not None else "-",
                     f"≤ {duration(eta)}" if job.state == "running" else "-"])
    queued = [totals.get((job.run.dataset, job.run.spec.prefix)) for job in jobs if job.state == "queued"]
    counts = ", ".join(f"{sum(j.state == s for j in jobs)} {s}"
                       for s in ("running", "queued", "done", "failed", "skipped") if any(j.state == s for j in jobs))
    overall = overall_seconds(running, queued, slots) if running or queued else 0.0
    header = f"[{time.strftime('%H:%M:%S')}] {counts}; overall ETA ≤ {duration(overall)} (early stopping: sooner)"
    return header + "\n" + table(["run", "state", "step/total", "best valid ndcg@10", "elapsed", "ETA"], rows)


def final_figures(workdir: Path) -> dict[str, float]:
    """Test recall@10 and ndcg@10 of a finished run, from its metrics.csv."""
    metrics = pd.read_csv(workdir / METRICS_FILE)
    test = metrics[(metrics["split"] == "test") & (metrics["k"] == 10)].set_index("metric")["value"]
    return {name: float(test[name]) for name in ("recall", "ndcg") if name in test}


def results(jobs: list[Job]) -> str:
    """Every finished run's test figures, then their mean ± std over seeds per dataset and model."""
    rows, by_model = [], {}
    for job in jobs:
        if job.state not in ("done", "skipped"):
            continue
        figures = final_figures(job.run.workdir)
        rows.append([job.run.name, *[f"{figures.get(m, float('nan')):.4f}" for m in ("recall", "ndcg")]])
        by_model.setdefault((job.run.dataset, job.run.spec.prefix), []).append(figures)
    if not rows:
        return "\nno run has finished"
    lines = ["\ntest figures (metrics.csv):", table(["run", "recall@10", "ndcg@10"], rows)]
    if any(len(seeds) > 1 for seeds in by_model.values()):
        summary = []
        for (dataset, prefix), seeds in by_model.items():
            frame = pd.DataFrame(seeds)
            summary.append([dataset, prefix, len(seeds), *[f"{frame[m].mean():.4f} ± {frame[m].std(ddof=1):.4f}"
                                                           if len(seeds) > 1 else f"{frame[m].mean():.4f}"
                                                           for m in ("recall", "ndcg")]])
        lines += ["\nmean ± std over seeds:", table(["dataset", "model", "seeds", "recall@10", "ndcg@10"], summary)]
    return "\n".join(lines)


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][-300:] if lines else "(empty log)"
