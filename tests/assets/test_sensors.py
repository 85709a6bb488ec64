"""The data-root sensor and the registration command, on folders the tests write."""

import json
import os

import dagster as dg
import pandas as pd

from genrec_assets.datasets import register
from genrec_assets.defs.resources import DataRoot
from genrec_assets.defs.sensors import dataset_folders, plan_tick
from genrec_ml.data.folders import content_hash, scan_data_root


def write_generic(folder, n_users=3):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"user_id": [u for u in range(n_users) for _ in range(2)], "item_id": [0, 1] * n_users,
                  "position": [0, 1] * n_users}).to_csv(folder / "interactions.csv", index=False)
    pd.DataFrame({"item_id": [0, 1], "title": ["a", "b"]}).to_csv(folder / "items.csv", index=False)


def tick(instance, root, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"data_root": DataRoot(path=str(root))})
    return dataset_folders(context)


def test_a_new_folder_becomes_a_partition_and_runs_once_per_content(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    write_generic(tmp_path / "shop")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a dataset")
    first = tick(instance, tmp_path)
    assert sorted(first.dynamic_partitions_requests[0].partition_keys) == ["shop", "synthetic"]
    assert [r.partition_key for r in first.run_requests] == ["shop"]  # synthetic is registered, not run
    instance.add_dynamic_partitions("datasets", ["shop", "synthetic"])  # what the daemon does with the request
    # same files: nothing to do; touched but unchanged bytes: still nothing
    again = tick(instance, tmp_path, first.cursor)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []
    path = tmp_path / "shop" / "items.csv"
    os.utime(path, ns=(1, 1))
    assert tick(instance, tmp_path, again.cursor).run_requests == []
    # changed content: one new run, with a different key
    write_generic(tmp_path / "shop", n_users=4)
    changed = tick(instance, tmp_path, again.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["shop"]
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key
    assert changed.run_requests[0].run_key.endswith(content_hash(tmp_path / "shop")[:16])


def test_unreadable_folder_is_reported_with_the_readers_error_once(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "stuff.csv").write_text("x\n1\n")
    plan = plan_tick(scan_data_root(tmp_path), {"synthetic"}, {})
    assert [f.name for f in plan.unreadable] == ["broken"]
    assert "no known dataset format" in plan.unreadable[0].error and "stuff.csv" in plan.unreadable[0].error
    assert plan.register == [] and plan.run == []
    assert plan_tick(scan_data_root(tmp_path), {"synthetic"}, plan.cursor).unreadable == []  # not again
    # fixed by the user: it becomes a dataset
    (tmp_path / "broken" / "stuff.csv").unlink()
    write_generic(tmp_path / "broken")
    fixed = plan_tick(scan_data_root(tmp_path), {"synthetic"}, plan.cursor)
    assert fixed.register == ["broken"] and [name for name, _ in fixed.run] == ["broken"]


def test_partitions_registered_before_the_sensor_are_remembered_not_rerun(tmp_path):
    write_generic(tmp_path / "shop")
    instance = dg.DagsterInstance.ephemeral()
    added, problems = register(instance, str(tmp_path))
    assert added == ["synthetic", "shop"] and problems == []
    assert register(instance, str(tmp_path)) == ([], [])
    result = tick(instance, tmp_path)
    assert result.run_requests == [] and result.dynamic_partitions_requests == []
    assert set(json.loads(result.cursor)) == {"shop"}


def test_the_sensor_is_off_unless_switched_on():
    assert dataset_folders.default_status == dg.DefaultSensorStatus.STOPPED
