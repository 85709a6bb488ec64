"""How long a new user waits: README set-up command 1's pipeline, per stage, on this machine.

Runs the README's launch command (`dg launch --job default_pipeline --partition synthetic`) in a
fresh runtime folder and Dagster home, so nothing is reused, then reads the run's event log and
prints the wall time of every step (asset or check) beside the total, and whether every check
passed. The install half of command 1 is not timed here (time it with `time` on a fresh clone).

    python benchmarks/first_run.py                      # the default synthetic size
    python benchmarks/first_run.py --config run.yaml    # any run config, e.g. a larger synthetic
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="a run config YAML file for the launch")
    parser.add_argument("--keep", type=Path, help="use this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="genrec-first-run-"))
    folder.mkdir(parents=True, exist_ok=True)
    home = folder / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "GENREC_RUNTIME_DIR": str(folder / "runtime"),
           "GENREC_DATA_ROOT": "", "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'runtime' / 'mlflow.db'}"}
    env.pop("GENREC_WAREHOUSE", None)
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "python"), "-m", "genrec_assets.datasets"]
    launch = [str(bin_dir / "dg"), "launch", "--job", "default_pipeline", "--partition", "synthetic",
              "-m", "genrec_assets.definitions", *(["--config", str(args.config)] if args.config else [])]
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=REPO, check=True)
    registered = time.perf_counter()
    code = subprocess.run(launch, env=env, cwd=REPO).returncode
    total = time.perf_counter() - start
    os.environ["DAGSTER_HOME"] = str(home)
    steps = step_times()
    print(f"\nfirst run on {os.cpu_count()} cores, folder {folder}")
    print(f"{'stage':44s} {'seconds':>8s}")
    print(f"{'register dataset partitions':44s} {registered - start:8.1f}")
    for step, seconds in steps:
        print(f"{step:44s} {seconds:8.1f}")
    print(f"{'steps in all':44s} {sum(s for _, s in steps):8.1f}")
    print(f"{'total wall (register + launch, imports included)':44s} {total:8.1f}")
    print("run " + ("succeeded: every check passed" if code == 0 else f"FAILED (exit {code})"))
    return code


def step_times() -> list[tuple[str, float]]:
    """(step key, seconds from start to success or failure) of the newest run, in start order."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        started: dict[str, float] = {}
        ended: dict[str, float] = {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None or entry.step_key is None:
                continue
            if event.event_type_value == "STEP_START":
                started[entry.step_key] = entry.timestamp
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                ended[entry.step_key] = entry.timestamp
    return sorted(((key, ended.get(key, started[key]) - started[key]) for key in started),
                  key=lambda item: started[item[0]])


if __name__ == "__main__":
    sys.exit(main())
