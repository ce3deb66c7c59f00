"""evolve.py --storage-path URI (or upstream's --bucket): the evolution is kept there after every row and
continues from there on a machine that has nothing of it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from yolo_ray.config import UserError
from yolo_ray.evolution import EVOLVE_RESULT_KEYS, read_history
from yolo_ray.evolution.searcher import COMPLETE_KEY


def rows_seen_in_bucket(bucket_csv: Path, record: Path):
    """A stub trial that records how many rows the bucket's evolve.csv held when it started."""

    def trainable(config: dict, train_config: dict) -> None:
        from ray import tune

        rows = max(0, len(bucket_csv.read_text().splitlines()) - 1) if bucket_csv.is_file() else 0
        with open(record, "a") as f:
            f.write(f"{rows}\n")
        fit = 1.0 / (1.0 + abs(config["hyp"]["lr0"] - 0.02) * 10)
        tune.report(
            {**dict(zip(EVOLVE_RESULT_KEYS, [fit, fit, fit, fit, 0.1, 0.1, 0.1])), "fitness": fit, COMPLETE_KEY: True}
        )

    return trainable


def test_bucket_is_upstreams_spelling_of_a_gcs_storage_path():
    from yolo_ray.evolution.stored import storage_option

    assert storage_option(None, "my-bucket") == "gs://my-bucket"
    assert storage_option(None, "s3://b/evolve") == "s3://b/evolve"
    assert storage_option("file:///x", None) == "file:///x"
    with pytest.raises(UserError, match="give one of them"):
        storage_option("file:///x", "b")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_stored_evolution_is_uploaded_after_every_row_and_resumed_on_a_fresh_machine(
    ray_cluster, tmp_path, stub_data, monkeypatch
):
    from ray import cloudpickle

    from yolo_ray.evolution.driver import run_evolution

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))  # where the local staging copy goes
    bucket, record = tmp_path / "bucket", tmp_path / "rows_seen"
    stored_csv = bucket / "exp" / "evolve.csv"
    common = {"data": str(stub_data), "seed": 1, "concurrency": 1, "project": str(tmp_path / "runs")}
    summary = run_evolution(
        {**common, "generations": 4, "storage_path": f"file://{bucket}"},
        trainable=rows_seen_in_bucket(stored_csv, record),
    )
    assert summary.status == "finished"
    assert [int(n) for n in record.read_text().split()] == [0, 1, 2, 3]  # each row was there before the next trial
    for name in ("evolve.csv", "hyp_evolve.yaml", "evolve.png", "opt.yaml"):
        assert (bucket / "exp" / name).is_file(), name
    assert not (tmp_path / "runs").exists()  # nothing where --project would have put it
    first = read_history(stored_csv)

    shutil.rmtree(tmp_path / "home")  # a fresh head node: only the bucket is left
    summary = run_evolution(
        {**common, "resume": f"file://{bucket}/exp", "generations": 6},
        trainable=rows_seen_in_bucket(stored_csv, record),
    )
    assert summary.status == "finished"
    after = read_history(stored_csv)
    assert len(after) == 6
    assert after.iloc[:4].equals(first)  # continued, nothing lost or rewritten

    with pytest.raises(UserError, match="no stored evolution there"):
        run_evolution(
            {**common, "resume": f"file://{bucket}/missing"}, trainable=rows_seen_in_bucket(stored_csv, record)
        )
