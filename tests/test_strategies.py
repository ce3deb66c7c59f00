"""Random search, Optuna's TPE / CMA-ES, the stop criteria and ETA, and --strategy's bad-input errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from yolo_ray.config import UserError, load_hyp
from yolo_ray.evolution import EVOLVE_RESULT_KEYS, constrain, load_search_space, read_history
from yolo_ray.evolution.strategies.classic import prepare_evolution
from yolo_ray.evolution.strategies.random_search import RandomStrategy, random_hyp
from yolo_ray.evolution.searcher import COMPLETE_KEY, EvolveSearcher
from yolo_ray.evolution.stopping import StopRule, eta_seconds, parse_duration, rows_since_best

REPO = Path(__file__).resolve().parents[1]


def classic_space():
    return prepare_evolution(load_hyp(), load_search_space("yolov5"))


def row_results(f: float) -> dict[str, float]:
    """fitness = 0.1·mAP@.5 + 0.9·mAP@.5:.95 = f."""
    return dict(zip(EVOLVE_RESULT_KEYS, [0.5, 0.5, f, f, 0.03, 0.02, 0.01]))


def in_bounds(hyp: dict, meta: dict) -> bool:
    return all(low <= hyp[k] <= high for k, (_, low, high) in meta.items())


@pytest.mark.timeout(20)
def test_random_is_uniform_on_gain_keys_and_keeps_the_rest():
    hyp, meta = classic_space()
    rng = np.random.default_rng(0)
    draws = pd.DataFrame([random_hyp(hyp, meta, rng) for _ in range(3000)])
    base = constrain(hyp, meta)
    for key, (gain, low, high) in meta.items():
        assert draws[key].between(low, high).all()
        if gain == 0:
            assert (draws[key] == base[key]).all()  # iou_t, fl_gamma, perspective, fliplr stay
        else:  # uniform: mean at the middle, a quarter of the draws in each quarter of the range
            assert abs(draws[key].mean() - (low + high) / 2) < 0.03 * (high - low)
            assert abs((draws[key] < low + (high - low) / 4).mean() - 0.25) < 0.03
    empty = pd.DataFrame()

    def first_proposal(seed: int) -> dict:
        return RandomStrategy(hyp, meta, 10, seed, empty).propose("t0", empty)

    assert first_proposal(5) == first_proposal(5) != first_proposal(6)  # seeded: reproducible


def drive_searcher(searcher: EvolveSearcher, score, in_flight: int = 3) -> list[dict]:
    """Suggest and complete trials (oldest first, `in_flight` at once) until FINISHED; the proposals in order."""
    live, proposals, i = [], [], 0
    while True:
        suggestion = searcher.suggest(f"t{i}") if len(live) < in_flight else None
        if suggestion == "FINISHED":
            return proposals
        if suggestion is not None:
            live.append((f"t{i}", suggestion["hyp"]))
            proposals.append(suggestion["hyp"])
            i += 1
            continue
        trial_id, hyp = live.pop(0)
        searcher.on_trial_complete(trial_id, {**row_results(score(hyp)), COMPLETE_KEY: True})


def peak(hyp: dict) -> float:
    """A smooth fitness with its optimum inside the space: hsv_s 0.3, mosaic 0.6, lr0 0.02."""
    return 1.0 / (1.0 + 3 * abs(hyp["hsv_s"] - 0.3) + 2 * abs(hyp["mosaic"] - 0.6) + 20 * abs(hyp["lr0"] - 0.02))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", ["tpe", "cmaes"])
def test_optuna_strategies_start_at_base_stay_in_bounds_and_resume_told_the_rows(tmp_path, strategy):
    pytest.importorskip("optuna")
    hyp, meta = classic_space()
    s = EvolveSearcher(tmp_path / "evolve.csv", load_hyp(), load_search_space(), 20, strategy=strategy, seed=0)
    proposals = drive_searcher(s, peak)
    assert proposals[0] == constrain(hyp, meta)  # the base hyp first, as the GA does
    assert all(in_bounds(p, meta) for p in proposals)
    assert len(read_history(tmp_path / "evolve.csv")) == 20
    gain0 = [k for k, (gain, _, _) in meta.items() if gain == 0]
    assert all(p[k] == constrain(hyp, meta)[k] for p in proposals for k in gain0)

    resumed = EvolveSearcher(tmp_path / "evolve.csv", load_hyp(), load_search_space(), 25, strategy=strategy, seed=0)
    study = resumed.strategy.study
    assert len(study.trials) == 20  # every evolve.csv row told; no base re-enqueued
    assert study.best_value == pytest.approx(resumed.best_fitness, rel=1e-4)
    more = drive_searcher(resumed, peak)
    assert len(more) == 5 and constrain(hyp, meta) not in more
    assert len(read_history(tmp_path / "evolve.csv")) == 25


@pytest.mark.timeout(60)
def test_tpe_failed_trial_is_told_fail_and_replaced(tmp_path):
    pytest.importorskip("optuna")
    import optuna

    s = EvolveSearcher(tmp_path / "evolve.csv", load_hyp(), load_search_space(), 3, strategy="tpe", seed=1)
    s.suggest("a")
    s.on_trial_complete("a", error=True)
    states = [t.state for t in s.strategy.study.trials]
    assert states == [optuna.trial.TrialState.FAIL]
    assert s.suggest("b") is not None and s.failed == 1


@pytest.mark.timeout(10)
def test_durations_and_stop_rules():
    assert [parse_duration(x) for x in ("8h", "90m", "1.5d", "30s", " 2H ", 600)] == [
        28800,
        5400,
        129600,
        30,
        7200,
        600,
    ]
    for bad in ("8", "h", "-1h", "0m", "8 hours"):
        with pytest.raises(UserError, match="--time-budget"):
            parse_duration(bad)

    frame = pd.DataFrame([row_results(f) for f in (0.1, 0.3, 0.2, 0.3, 0.25)])
    assert rows_since_best(frame) == 3  # the first 0.3 (row 1) is the best; a tie is no improvement
    assert rows_since_best(frame.iloc[:0]) == 0
    rule = StopRule(time_budget_s=100, patience=4, start=1000.0)
    assert rule.reason(frame, now=1050.0) is None
    assert "time budget" in rule.reason(frame, now=1100.0)
    assert rule.time_left(now=1030.0) == 70
    assert "not improved for 3 rows" in StopRule(patience=3).reason(frame)

    assert eta_seconds(10, [], 2) is None  # nothing measured yet
    assert eta_seconds(10, [30.0, 50.0], 4) == 3 * 40.0  # 3 waves of 4 at 40 s
    assert eta_seconds(0, [30.0], 4) == 0


@pytest.mark.timeout(20)
def test_patience_finishes_the_search_and_running_trials_still_become_rows(tmp_path):
    s = EvolveSearcher(
        tmp_path / "evolve.csv", load_hyp(), load_search_space(), 50, seed=0, patience=2, strategy="random"
    )
    for trial_id in ("a", "b", "c", "d"):
        s.suggest(trial_id)
    for trial_id, f in (("a", 0.5), ("b", 0.2), ("c", 0.4)):
        s.on_trial_complete(trial_id, {**row_results(f), COMPLETE_KEY: True})
    assert s.suggest("e") == "FINISHED" and "--patience-rows 2" in s.stop_reason
    s.on_trial_complete("d", {**row_results(0.1), COMPLETE_KEY: True})  # in flight when it stopped
    assert s.rows == 4


def evolve_cli():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import evolve
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return evolve


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--strategy", "annealing"], "argument --strategy: invalid choice: 'annealing'"),
        (["--strategy", "population", "--population", "1"], "--population 1: a population needs at least 2"),
        (["--strategy", "population", "--search-space", "yolov5"], "more: [gain, low, high] triples, but --strategy"),
        (["--strategy", "random", "--search-space", "yolov5_population"], "population [enabled, low, high] triples"),
        (["--strategy", "population", "--early-stop"], "--early-stop cannot be used with --strategy population"),
        (["--time-budget", "8 hours"], "--time-budget '8 hours': expected a number and a unit"),
        (["--patience-rows", "0"], "--patience-rows 0 is out of range (valid: [1, inf))"),
        (["--patience", "0"], "--patience-rows 0 is out of range"),  # the old spelling still works
    ],
)
def test_strategy_usage_errors_are_one_line_exit_2_and_create_nothing(tmp_path, capsys, argv, expected):
    project = tmp_path / "runs"
    assert evolve_cli().main([*argv, "--project", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert not project.exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy, missing", [("tpe", "optuna"), ("cmaes", "optuna"), ("cmaes", "cmaes")])
def test_optuna_missing_is_one_clear_line(tmp_path, capsys, monkeypatch, strategy, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import <missing>` raise ImportError
    project = tmp_path / "runs"
    assert evolve_cli().main(["--strategy", strategy, "--project", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"--strategy {strategy} needs the '{missing}' package" in err and "yolo_ray[optuna]" in err
    assert not project.exists()
