"""The classic YOLOv5 mutation: parent choice, mutation factors, clamping and rounding, reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from yolo_ray.config import UserError, load_hyp
from yolo_ray.evolution import (
    EVOLVE_RESULT_KEYS,
    constrain,
    load_search_space,
    mutate,
    mutation_factors,
    prepare_evolution,
    propose,
)

# Fitness = 0.1 * mAP@.5 + 0.9 * mAP@.5:.95, so rows with both set to m have fitness m.
FITNESS = [0.10, 0.50, 0.20, 0.45, 0.05, 0.40, 0.30, 0.35, 0.15, 0.01, 0.25, 0.33]
TOP5_ROWS = [1, 3, 5, 7, 11]  # fitness 0.50, 0.45, 0.40, 0.35, 0.33
TOP5_WEIGHTS = np.array([0.17, 0.12, 0.07, 0.02, 1e-6])  # fitness - 0.33 + 1e-6


def history_frame(fitness_values, hyp_rows) -> pd.DataFrame:
    rows = []
    for f, hyp in zip(fitness_values, hyp_rows):
        rows.append({**dict(zip(EVOLVE_RESULT_KEYS, [0.5, 0.5, f, f, 0.03, 0.02, 0.01])), **hyp})
    return pd.DataFrame(rows)


def marked_history() -> pd.DataFrame:
    """Each row's `box` value (never mutated by MARKER_META) names the row it came from."""
    return history_frame(FITNESS, [{"lr0": 0.01, "box": 0.1 + 0.001 * i, "cls": 0.9} for i in range(len(FITNESS))])


MARKER_META = {"lr0": (1.0, 1e-5, 0.1), "box": (0.0, 0.02, 0.2)}
MARKER_BASE = {"lr0": 0.01, "box": 0.05, "cls": 0.5}


@pytest.mark.timeout(10)
def test_prepare_evolution_handles_anchors_like_upstream():
    meta = load_search_space("yolov5")
    base = load_hyp()
    hyp, prepared = prepare_evolution(base, meta)
    assert list(hyp)[-1] == "anchors" and hyp["anchors"] == 3.0
    assert prepared == meta and "anchors" not in base
    hyp, prepared = prepare_evolution(base, meta, noautoanchor=True)
    assert "anchors" not in hyp and "anchors" not in prepared and "anchors" in meta
    hyp, _ = prepare_evolution({**base, "anchors": 4}, meta)
    assert hyp["anchors"] == 4.0
    with pytest.raises(UserError, match="missing from the hyp: lr0"):
        prepare_evolution({"box": 0.05}, {"lr0": (1, 0, 1), "box": (1, 0, 1)})


@pytest.mark.timeout(10)
def test_constrain_clamps_then_rounds_to_5_decimals():
    meta = {"lr0": (1, 1e-5, 0.1), "momentum": (0.3, 0.6, 0.98), "box": (1, 0.02, 0.2)}
    out = constrain({"lr0": 0.5, "momentum": 0.123456789, "box": 0.0512345678, "cls": 0.1234567}, meta)
    assert out == {"lr0": 0.1, "momentum": 0.6, "box": 0.05123, "cls": 0.1234567}


@pytest.mark.timeout(10)
def test_empty_history_proposes_the_constrained_base():
    base = {"lr0": 0.5, "box": 0.0512345678, "cls": 0.5}
    rng = np.random.default_rng(0)
    assert propose(pd.DataFrame(), base, MARKER_META, rng) == {"lr0": 0.1, "box": 0.05123, "cls": 0.5}
    only_nan = history_frame([np.nan], [{"lr0": 0.02, "box": 0.1, "cls": 0.9}])
    assert propose(only_nan, base, MARKER_META, rng) == {"lr0": 0.1, "box": 0.05123, "cls": 0.5}


@pytest.mark.timeout(20)
def test_single_parent_is_drawn_from_top5_with_fitness_weights():
    history = marked_history()
    rng = np.random.default_rng(1)
    n = 3000
    boxes = [propose(history, MARKER_BASE, MARKER_META, rng)["box"] for _ in range(n)]
    top5_boxes = [round(0.1 + 0.001 * i, 5) for i in TOP5_ROWS]
    assert set(boxes) <= set(top5_boxes)
    observed = np.array([boxes.count(b) for b in top5_boxes]) / n
    expected = TOP5_WEIGHTS / TOP5_WEIGHTS.sum()  # 0.447, 0.316, 0.184, 0.053, ~0
    np.testing.assert_allclose(observed, expected, atol=0.035)


@pytest.mark.timeout(10)
def test_child_takes_unevolved_keys_from_base_and_evolved_keys_from_parent():
    history = marked_history()
    rng = np.random.default_rng(2)
    children = [propose(history, MARKER_BASE, MARKER_META, rng) for _ in range(200)]
    assert all(child["cls"] == 0.5 for child in children)  # not in the space: the base value, not 0.9
    lr0 = np.array([child["lr0"] for child in children])
    assert (lr0 != 0.01).mean() > 0.7  # every parent has lr0 0.01; 80% of draws mutate it
    assert lr0.min() > 0.01 * 0.3 - 1e-9 and lr0.max() < 0.01 * 3.0 + 1e-9


@pytest.mark.timeout(10)
def test_weighted_parent_is_the_fitness_weighted_top5_average():
    history = marked_history()
    child = propose(history, MARKER_BASE, MARKER_META, np.random.default_rng(3), parent="weighted")
    # (0.17*0.101 + 0.12*0.103 + 0.07*0.105 + 0.02*0.107 + 1e-6*0.111) / 0.380001 = 0.1026843...
    assert child["box"] == 0.10268
    single_row = history.iloc[[4]]
    child = propose(single_row, MARKER_BASE, MARKER_META, np.random.default_rng(3), parent="weighted")
    assert child["box"] == 0.104
    with pytest.raises(UserError, match="parent must be one of single, weighted"):
        propose(history, MARKER_BASE, MARKER_META, np.random.default_rng(3), parent="best")


@pytest.mark.timeout(10)
def test_mutation_factors_follow_the_upstream_formula_exactly():
    gains = np.array([1.0, 0.3, 2.0, 0.0, 1.0])
    for seed in range(20):
        factors = mutation_factors(gains, np.random.default_rng(seed))
        replay = np.random.default_rng(seed)
        expected = np.ones(len(gains))
        while np.all(expected == 1):
            u, z, shared = replay.random(len(gains)), replay.standard_normal(len(gains)), replay.random()
            expected = np.clip(gains * (u < 0.8) * z * shared * 0.2 + 1, 0.3, 3.0)
        np.testing.assert_array_equal(factors, expected)


@pytest.mark.timeout(20)
def test_mutation_factor_distribution():
    rng = np.random.default_rng(4)
    factors = np.array([mutation_factors(np.array([1.0, 1.0]), rng) for _ in range(20000)])
    mutated = factors[:, 0] != 1
    # P(a key mutates | at least one of two did) = 0.8 / (1 - 0.2**2)
    assert abs(mutated.mean() - 0.8 / 0.96) < 0.01
    change = factors[mutated, 0] - 1
    # E[(0.2 N U)^2] = 0.04 * E[N^2] * E[U^2] = 0.04 / 3; symmetric around 0
    assert abs(change.std() - np.sqrt(0.04 / 3)) < 0.004
    assert abs(change.mean()) < 0.003

    heavy = np.array([mutation_factors(np.array([100.0]), rng)[0] for _ in range(2000)])
    assert heavy.min() == 0.3 and heavy.max() == 3.0


@pytest.mark.timeout(10)
def test_mutation_never_returns_all_ones_and_gain0_never_moves():
    rng = np.random.default_rng(5)
    factors = np.array([mutation_factors(np.array([1.0, 0.0, 0.0]), rng) for _ in range(5000)])
    assert np.all(factors[:, 0] != 1)
    assert np.all(factors[:, 1:] == 1)
    with pytest.raises(ValueError, match="no search-space key has a gain > 0"):
        mutation_factors(np.zeros(3), rng)


@pytest.mark.timeout(20)
def test_full_space_proposals_stay_in_bounds_rounded_and_gain0_fixed():
    hyp, meta = prepare_evolution(load_hyp(), load_search_space("yolov5"))
    base = constrain(hyp, meta)
    rng = np.random.default_rng(6)
    rows, fits = [], []
    for _ in range(8):
        rows.append(propose(history_frame(fits, rows), hyp, meta, rng))
        fits.append(rng.random())
    history = history_frame(fits, rows)
    fixed = [k for k, (gain, _, _) in meta.items() if gain == 0]
    assert fixed == ["iou_t", "fl_gamma", "perspective", "fliplr"]
    for _ in range(1000):
        child = propose(history, hyp, meta, rng)
        assert list(child) == list(hyp)
        for key, (_, low, high) in meta.items():
            assert low <= child[key] <= high
            assert child[key] == round(child[key], 5)
        assert all(child[k] == base[k] for k in fixed)


@pytest.mark.timeout(10)
def test_seeded_runs_repeat_and_column_order_does_not_matter():
    hyp, meta = prepare_evolution(load_hyp(), load_search_space("yolov5"))

    def run(seed: int, reverse_columns: bool) -> list[dict]:
        rng, rows, fits = np.random.default_rng(seed), [], []
        for _ in range(12):
            history = history_frame(fits, rows)
            if reverse_columns and not history.empty:
                history = history[list(EVOLVE_RESULT_KEYS) + list(history.columns[7:][::-1])]
            rows.append(propose(history, hyp, meta, rng))
            fits.append(round(float(np.sum([v for v in rows[-1].values()])) % 1, 4))
        return rows

    assert run(7, False) == run(7, False) == run(7, True)
    assert run(7, False) != run(8, False)


@pytest.mark.timeout(10)
def test_upstream_history_without_anchors_column_mutates_the_base_anchors():
    meta = {"anchors": (2.0, 2.0, 10.0), "box": (0.0, 0.02, 0.2)}
    history = history_frame([0.3], [{"box": 0.07, "lr0": 0.02}])
    rng = np.random.default_rng(9)
    children = [
        mutate(history.iloc[0].to_dict(), {"box": 0.05, "lr0": 0.01, "anchors": 3.0}, meta, rng) for _ in range(300)
    ]
    anchors = np.array([c["anchors"] for c in children])
    assert np.all(anchors != 3.0) and 2.0 <= anchors.min() and anchors.max() <= 9.0
    assert all(c["box"] == 0.07 and c["lr0"] == 0.01 for c in children)
