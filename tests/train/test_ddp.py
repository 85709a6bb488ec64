"""DDP under torchrun, on the CPU with gloo: two ranks train the tiny task of `ddp_worker.py`.

The first launch trains an uninterrupted run, then one whose ranks SIGKILL themselves as they
start step 13; the same command again resumes that one from last.pt (written at step 10,
mid-epoch). Each rank's imports cost most of a launch, hence two launches for everything rather
than some per test; the tests on them are marked slow like the other multi-process end-to-end
tests. (Not torchrun's own `--max-restarts`: its restarted workers may find the dead attempt's
addresses in the rendezvous store it shares across attempts, pytorch/pytorch#135712 and #167288.)
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from genrec_ml.errors import GenrecConfigError
from genrec_ml.train.distributed import Processes, start_processes
from genrec_ml.train.loop import train
from tests.train.ddp_worker import CONFIG, N_TRAIN, varied_lengths_task
from tests.train.test_loop import small_model

REPO = Path(__file__).resolve().parents[2]
RANKS = (0, 1)
STEPS_PER_EPOCH = N_TRAIN // CONFIG.batch_size // len(RANKS)  # 6
STEPS = CONFIG.max_epochs * STEPS_PER_EPOCH  # 24
KILLED_AT, SAVED_AT = 13, 10  # last.pt every 5 steps
LAUNCH_TIMEOUT_S = 300  # the imports alone take ~20 s per rank and launch on two shared cores


def torchrun(*args: str, timeout: float = LAUNCH_TIMEOUT_S) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 ARGS`; on a timeout its whole process group is killed."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(len(RANKS)),
               *args]
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the ranks too, not only torchrun
        output, _ = process.communicate()
        pytest.fail(f"torchrun ran past {timeout} s:\n{output[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, output)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    command = ("-m", "tests.train.ddp_worker", str(out), "whole", f"split:{KILLED_AT}")
    killed = torchrun(*command)
    assert killed.returncode != 0 and "exitcode  : -9" in killed.stdout, killed.stdout[-4000:]
    assert (out / "whole" / "rank1.pt").is_file() and not (out / "split" / "rank0.pt").exists()
    resumed = torchrun(*command)
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    return out


def rank_results(runs: Path, name: str) -> list[dict]:
    return [torch.load(runs / name / f"rank{rank}.pt", weights_only=True) for rank in RANKS]


def events(runs: Path, name: str, rank: int = 0) -> list[dict]:
    return [json.loads(line) for line in (runs / name / f"events.rank{rank}.jsonl").read_text().splitlines()]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.slow
def test_ranks_train_on_disjoint_shards_and_end_with_identical_weights(runs):
    results = rank_results(runs, "whole")
    assert [r["steps"] for r in results] == [STEPS, STEPS]
    for epoch in range(CONFIG.max_epochs):
        seen = [torch.cat(r["examples"][epoch * STEPS_PER_EPOCH : (epoch + 1) * STEPS_PER_EPOCH]) for r in results]
        assert len(seen[0]) == len(seen[1]) == N_TRAIN // 2
        # each epoch: every example exactly once, half on each rank
        assert sorted(torch.cat(seen).tolist()) == list(range(N_TRAIN)), epoch
    assert_same_weights(results[0]["weights"], results[1]["weights"])
    untrained = small_model(dropout=0.1).state_dict()
    assert not all(torch.equal(results[0]["weights"][k], untrained[k]) for k in untrained)  # they did train


@pytest.mark.slow
def test_gradients_and_logged_losses_are_averaged_over_the_ranks(runs):
    results = rank_results(runs, "whole")
    buckets = [r["buckets"] for r in results]  # step 1, by DDP bucket
    assert buckets[0] and buckets[0].keys() == buckets[1].keys()
    for index in buckets[0]:
        local = [b[index]["local"] for b in buckets]
        assert not torch.equal(local[0], local[1])  # the ranks' batches differ
        assert torch.equal(buckets[0][index]["averaged"], buckets[1][index]["averaged"])
        torch.testing.assert_close(buckets[0][index]["averaged"], (local[0] + local[1]) / 2, rtol=1e-6, atol=1e-9)
    steps = [e for e in events(runs, "whole") if e["event"] == "step"]  # log_every_steps = 1
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1))
    for event in steps:
        local = [r["losses"][event["step"] - 1] for r in results]
        assert event["loss"] == pytest.approx(sum(local) / 2, rel=1e-6), event["step"]
    assert results[0]["history"] == results[1]["history"]  # the same train_loss and metrics on both


@pytest.mark.slow
def test_only_rank_0_writes_checkpoints_and_calls_the_callback(runs):
    for name in ("whole", "split"):
        folder = runs / name
        assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
        saves = [json.loads((folder / f"saves.rank{rank}.json").read_text()) for rank in RANKS]
        assert saves[1] == [], name
        assert saves[0] and {Path(p).name for p in saves[0]} == {"last.pt.tmp", "best.pt.tmp"}, name
        assert not (folder / "events.rank1.jsonl").exists(), name
        kinds = {e["event"] for e in events(runs, name)}
        assert kinds == {"step", "eval", "checkpoint"}, name
    # `train` returned on rank 1 only once rank 0 had written the final last.pt
    assert [r["last_step_on_return"] for r in rank_results(runs, "whole")] == [STEPS, STEPS]


@pytest.mark.slow
def test_a_killed_run_resumes_from_last_pt_and_ends_with_the_uninterrupted_weights(runs):
    log = events(runs, "split")
    killed = [e for e in log if not e["resumed"]]
    resumed = [e for e in log if e["resumed"]]
    assert max(e["step"] for e in killed) == KILLED_AT - 1
    assert [e["step"] for e in killed if e["event"] == "checkpoint" and e["kind"] == "last"][-1] == SAVED_AT
    assert resumed[0]["event"] == "step" and resumed[0]["step"] == SAVED_AT + 1
    assert max(e["step"] for e in resumed) == STEPS
    whole, split = rank_results(runs, "whole"), rank_results(runs, "split")
    for rank in RANKS:
        # the resumed launch trained each rank on the same shard, in the same order, as the whole run
        assert len(split[rank]["examples"]) == STEPS - SAVED_AT
        assert all(torch.equal(a, b) for a, b in zip(split[rank]["examples"], whole[rank]["examples"][SAVED_AT:],
                                                     strict=True))
        assert split[rank]["steps"] == STEPS
        # bit for bit: each rank's dropout streams came back from last.pt, not rank 0's
        assert_same_weights(split[rank]["weights"], whole[rank]["weights"])
    assert split[0]["history"] == whole[0]["history"]


@pytest.mark.slow
def test_one_process_refuses_a_last_pt_written_by_two(runs, tmp_path):
    shutil.copytree(runs / "split" / "checkpoints", tmp_path, dirs_exist_ok=True)
    with pytest.raises(GenrecConfigError, match="written by 2 process"):
        train(small_model(dropout=0.1), *varied_lengths_task(), CONFIG, tmp_path)


@pytest.mark.parametrize("device, gpus, backend", [
    ("cpu", True, "gloo"),  # a CPU run on a GPU machine: NCCL would refuse its CPU tensors
    ("auto", True, "nccl"),
    ("cuda:0", True, "nccl"),
    ("auto", False, "gloo"),
])
def test_the_process_group_backend_follows_the_run_device(monkeypatch, device, gpus, backend):
    started = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", started.append)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    assert start_processes(device) == Processes(rank=1, world_size=2, local_rank=1, owns_group=True)
    assert started == [backend]
