"""EvolveSearcher: proposals, rows, failures, save/restore; then a real Tune run with a stub trainable."""

from __future__ import annotations

import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from yolo_ray.config import UserError, load_hyp
from yolo_ray.evolution import EVOLVE_RESULT_KEYS, append_row, constrain, load_search_space, read_history
from yolo_ray.evolution.searcher import COMPLETE_KEY, EvolveSearcher

FINISHED = "FINISHED"


def make_searcher(tmp_path: Path, generations: int = 5, **kwargs) -> EvolveSearcher:
    return EvolveSearcher(tmp_path / "evolve.csv", load_hyp(), load_search_space(), generations, seed=1, **kwargs)


def done_result(mapk: float, **extra) -> dict:
    """A finished trial's last report: fitness = 0.1 * mAP@.5 + 0.9 * mAP@.5:.95 = mapk here."""
    return {
        **dict(zip(EVOLVE_RESULT_KEYS, [0.6, 0.5, mapk, mapk, 0.03, 0.02, 0.01])),
        "done": True,
        COMPLETE_KEY: True,
        **extra,
    }


@pytest.mark.timeout(20)
def test_base_once_then_mutations_while_nothing_has_finished(tmp_path):
    s = make_searcher(tmp_path)
    meta = s.meta
    first, second, third = (s.suggest(f"t{i}")["hyp"] for i in range(3))
    assert first == constrain(s.base_hyp, meta)  # upstream's first generation: the base hyp, unmutated
    for child in (second, third):
        assert child != first
        for key, (gain, low, high) in meta.items():
            assert low <= child[key] <= high
            if gain == 0:
                assert child[key] == first[key]  # gain-0 keys (iou_t, fl_gamma, ...) never move
    assert s.base_hyp["anchors"] == 3.0  # upstream adds anchors=3 when the hyp file has none


@pytest.mark.timeout(20)
def test_rows_finish_and_failures_are_replaced(tmp_path):
    s = make_searcher(tmp_path, generations=3)
    ids = [f"t{i}" for i in range(3)]
    hyps = {t: s.suggest(t)["hyp"] for t in ids}
    assert s.suggest("extra") is None  # 0 rows + 3 in flight = 3 generations: wait, don't finish yet
    s.on_trial_complete("t0", done_result(0.2))
    s.on_trial_complete("t1", error=True)  # crashed after its retries: not a row
    s.on_trial_complete("t2", done_result(math.nan))  # NaN loss: not a row either
    assert (s.rows, s.failed) == (1, 2)
    replacement = s.suggest("t3")["hyp"]  # the two failures are replaced by mutations of the row
    # Stopped by the scheduler: Tune says done, but training did not finish. Not a row, not a failure.
    s.on_trial_complete("t3", {**done_result(0.3), COMPLETE_KEY: False})
    assert (s.rows, s.failed, s.stopped) == (1, 2, 1)
    for t in ("t4", "t5"):
        s.suggest(t)
        s.on_trial_complete(t, done_result(0.1))
    assert s.suggest("t6") == FINISHED
    history = read_history(tmp_path / "evolve.csv")
    assert len(history) == 3
    assert history.iloc[0]["lr0"] == hyps["t0"]["lr0"]
    assert history.iloc[0]["metrics/mAP_0.5:0.95"] == pytest.approx(0.2)
    assert replacement != hyps["t0"]
    assert s.best_fitness == pytest.approx(0.2)


@pytest.mark.timeout(20)
def test_failure_cap_finishes_the_search(tmp_path):
    s = make_searcher(tmp_path, generations=50, max_failed_trials=2)
    for t in ("a", "b"):
        s.suggest(t)
        s.on_trial_complete(t, error=True)
    assert s.failure_cap_reached
    assert s.suggest("c") == FINISHED
    assert "trial b" in s.last_failure


@pytest.mark.timeout(20)
def test_save_restore_round_trip_and_csv_stays_the_source_of_truth(tmp_path):
    s = make_searcher(tmp_path, generations=10)
    for i in range(3):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", done_result(0.1 * (i + 1)))
    s.suggest("live")
    s.save(str(tmp_path / "state.pkl"))
    expected_next = s.suggest("next")["hyp"]

    restored = make_searcher(tmp_path, generations=99)
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.generations == 10
    assert list(restored.live) == ["live"]
    assert restored.rows == 3
    assert restored.suggest("next")["hyp"] == expected_next  # same RNG state, same history: same proposal

    # A row written after the save (the driver died between the two) still counts after restore.
    append_row(tmp_path / "evolve.csv", done_result(0.9), expected_next)
    again = make_searcher(tmp_path, generations=99)
    again.restore(str(tmp_path / "state.pkl"))
    assert again.rows == 4
    assert again.best_fitness == pytest.approx(0.9)


@pytest.mark.timeout(20)
def test_continues_an_upstream_evolve_csv_and_rejects_foreign_columns(tmp_path):
    hyp = {**load_hyp(), "anchors": 3.0}
    keys = [*EVOLVE_RESULT_KEYS, *hyp]
    rows = [[0.5, 0.4, 0.3, m, 0.05, 0.04, 0.03, *hyp.values()] for m in (0.1, 0.2)]
    # upstream's print_mutation: '%20s,' header, '%20.5g,' rows, right-stripped of the last comma
    text = ("%20s," * len(keys) % tuple(keys)).rstrip(",") + "\n"
    text += "".join(("%20.5g," * len(keys) % tuple(r)).rstrip(",") + "\n" for r in rows)
    (tmp_path / "evolve.csv").write_text(text)
    s = make_searcher(tmp_path, generations=3)
    assert s.rows == 2
    child = s.suggest("t")["hyp"]
    assert child != constrain(s.base_hyp, s.meta)  # a mutation of a parent, not the base again
    s.on_trial_complete("t", done_result(0.25))
    assert s.suggest("u") == FINISHED
    assert np.loadtxt(tmp_path / "evolve.csv", delimiter=",", skiprows=1, ndmin=2).shape == (3, len(keys))

    with pytest.raises(UserError, match="noautoanchor"):
        make_searcher(tmp_path, noautoanchor=True)  # the file has an anchors column, this hyp has none


def stub_trainable(config: dict, train_config: dict) -> None:
    """Fitness a cheap function of the hyp; sleeps so that concurrent trials visibly overlap."""
    from ray import tune

    start = time.time()
    time.sleep(1.5)  # long enough to overlap even when trial actors start slowly under load
    h = config["hyp"]
    f = 1.0 / (1.0 + abs(h["lr0"] - 0.02) * 10 + abs(h["momentum"] - 0.9))
    tune.report(
        {
            **dict(zip(EVOLVE_RESULT_KEYS, [f, f, f, f, 0.1, 0.1, 0.1])),
            "fitness": f,
            "t_start": start,
            "t_end": time.time(),
            COMPLETE_KEY: True,
        }
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_tune_run_writes_exactly_n_rows_with_concurrent_trials(ray_cluster, tmp_path, stub_data):
    from ray import cloudpickle
    from ray.tune import ExperimentAnalysis

    from yolo_ray.evolution.driver import run_evolution

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    summary = run_evolution(
        {"generations": 10, "project": str(tmp_path), "data": str(stub_data), "seed": 0, "concurrency": 4},
        trainable=stub_trainable,
    )
    assert summary.status == "finished" and summary.exit_code == 0
    history = read_history(summary.save_dir / "evolve.csv")
    assert len(history) == 10
    base = pd.Series(constrain({**load_hyp(), "anchors": 3.0}, load_search_space()))
    hyp_rows = history[base.index]
    assert (hyp_rows == base).all(axis=1).sum() == 1  # the base hyp ran exactly once (rows: completion order)
    assert (summary.save_dir / "hyp_evolve.yaml").is_file() and (summary.save_dir / "evolve.png").is_file()
    assert "python scripts/train.py --hyp" in summary.message

    (experiment,) = [p for p in summary.save_dir.iterdir() if p.name.startswith("tune-")]
    spans = [
        (r["t_start"], r["t_end"])
        for r in ExperimentAnalysis(str(experiment)).trial_dataframes.values()
        for _, r in r.iterrows()
    ]
    overlapping = sum(a[0] < b[1] and b[0] < a[1] for a, b in itertools.combinations(spans, 2))
    assert overlapping > 0, "no two trials ran at the same time"
