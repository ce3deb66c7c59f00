"""Upstream's population GA: adaptive rates, selection and breeding replayed from a seeded RNG against the
formulas, the generation barrier, resume from evolve.csv + evolve_population.yaml, and its search space."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from yolo_ray.config import UserError, load_hyp, load_yaml
from yolo_ray.evolution import EVOLVE_RESULT_KEYS, append_row, load_search_space, read_history
from yolo_ray.evolution.strategies.classic import prepare_evolution
from yolo_ray.evolution.strategies.population import (
    POPULATION_FILE,
    PopulationStrategy,
    breed,
    crossover_rate,
    elite_size,
    ga_generations,
    initial_population,
    mutation_rate,
    select,
    tournament_size,
)

SPACE = "yolov5_population"


def upstream_space():
    return prepare_evolution(load_hyp(), load_search_space(SPACE, enabled_flags=True))


def results_for(map50: float, fitness_value: float = 0.1) -> dict[str, float]:
    return dict(zip(EVOLVE_RESULT_KEYS, [0.5, 0.5, map50, fitness_value, 0.03, 0.02, 0.01]))


@pytest.mark.timeout(10)
def test_shipped_space_enables_upstreams_augmentation_keys_only():
    meta = load_search_space(SPACE, enabled_flags=True)
    enabled = [k for k, (on, _, _) in meta.items() if on]
    assert enabled == [
        "hsv_h",
        "hsv_s",
        "hsv_v",
        "degrees",
        "translate",
        "scale",
        "shear",
        "perspective",
        "flipud",
        "fliplr",
        "mosaic",
        "mixup",
        "copy_paste",
    ]
    assert meta["lr0"] == (0.0, 1e-5, 0.1) and meta["degrees"] == (1.0, 0.0, 45.0)
    assert {k: v[1:] for k, v in meta.items()} == {k: v[1:] for k, v in load_search_space("yolov5").items()}


@pytest.mark.timeout(10)
def test_space_formats_are_not_interchangeable(tmp_path):
    with pytest.raises(
        UserError,
        match=r"lr0, lrf, momentum and 26 more: \[gain, low, high\] triples, but --strategy "
        "population takes",
    ) as info:
        load_search_space("yolov5", enabled_flags=True)
    assert str(info.value).count("triples") == 1 and len(str(info.value)) < 300  # one sentence, not one per key
    with pytest.raises(
        UserError, match="population \\[enabled, low, high\\] triples; use them with --strategy population"
    ):
        load_search_space(SPACE)
    none_on = tmp_path / "off.yaml"
    none_on.write_text("hsv_h: [false, 0.0, 0.1]\n")
    with pytest.raises(UserError, match="no key is enabled"):
        load_search_space(none_on, enabled_flags=True)


@pytest.mark.timeout(10)
def test_adaptive_rates_follow_upstream_schedules():
    total = 10
    assert [elite_size(g, total) for g in (0, 4, 5, 9)] == [2, 3, 3, 4]  # 2 + int(3 g / G)
    assert [tournament_size(g, total, 50) for g in (0, 1, 7, 8, 9)] == [10, 9, 3, 2, 2]  # min(10, P) - g / (G/10)
    assert tournament_size(0, total, 4) == 4 and tournament_size(3, total, 4) == 2
    assert [crossover_rate(g, total) for g in (0, 2, 5, 9)] == [1.0, 0.8, 0.5, 0.5]
    assert [mutation_rate(g, total) for g in (0, 2, 4, 5, 9)] == pytest.approx([0.5, 0.3, 0.1, 0.01, 0.01])
    assert ga_generations(100, 50) == 2 and ga_generations(101, 50) == 3 and ga_generations(3, 50) == 1


def replay_select(scores, generation, total, rng):
    size, k, elite = len(scores), tournament_size(generation, total, len(scores)), elite_size(generation, total)
    winners = []
    for _ in range(size - elite):
        entrants = rng.choice(size, size=k, replace=False)
        best = max(scores[i] for i in entrants)
        winners.append(next(i for i in entrants if scores[i] == best))
    cutoff = sorted(scores)[-elite]
    return winners + [i for i in range(size) if scores[i] >= cutoff]


@pytest.mark.timeout(20)
def test_selection_replays_tournaments_and_elites():
    rng = np.random.default_rng(0)
    for seed in range(30):
        scores = rng.random(12).round(2).tolist()  # rounding makes ties: elites can exceed the elite size
        generation, total = seed % 6, 6
        pool = select(scores, generation, total, np.random.default_rng(seed))
        assert pool == replay_select(scores, generation, total, np.random.default_rng(seed))
        assert len(pool) >= len(scores)  # breeding draws pool[0 .. P-1]
        elites = pool[len(scores) - elite_size(generation, total) :]
        assert sorted(scores[i] for i in elites)[0] == sorted(scores)[-elite_size(generation, total)]


@pytest.mark.timeout(20)
def test_breeding_replays_crossover_and_clamped_mutation():
    low, high = np.array([0.0, 0.0, 0.0, 0.0]), np.array([1.0, 0.1, 45.0, 0.9])
    base = np.array([0.5, 0.015, 0.0, 0.5])
    for seed in range(10):
        rng = np.random.default_rng(seed)
        population = initial_population(base, low, high, 6, rng)
        scores = rng.random(6).tolist()
        generation, total = seed % 4, 4
        children = breed(population, scores, generation, total, low, high, np.random.default_rng(100 + seed))

        replay = np.random.default_rng(100 + seed)
        pool = replay_select(scores, generation, total, replay)
        cross, mut = crossover_rate(generation, total), mutation_rate(generation, total)
        for child in children:
            first, second = pool[replay.integers(6)], pool[replay.integers(6)]
            if replay.random() < cross:
                point = replay.integers(1, 4)
                expected = np.concatenate([population[first][:point], population[second][point:]])
            else:
                expected = population[first].copy()
            for j in range(4):
                if replay.random() < mut:
                    expected[j] = min(max(expected[j] + replay.uniform(-0.1, 0.1), low[j]), high[j])
            np.testing.assert_array_equal(child, expected)
        assert (children >= low).all() and (children <= high).all()


@pytest.mark.timeout(20)
def test_initial_population_is_base_then_uniform_random():
    low, high = np.array([0.0, 10.0]), np.array([1.0, 20.0])
    population = initial_population(np.array([0.3, 12.0]), low, high, 2000, np.random.default_rng(1))
    assert population[0].tolist() == [0.3, 12.0]
    rest = population[1:]
    assert (rest >= low).all() and (rest < high).all()
    assert abs(rest[:, 0].mean() - 0.5) < 0.03 and abs(rest[:, 1].mean() - 15.0) < 0.3


def drive(strategy: PopulationStrategy, csv_path, n_rows: int):
    """Propose trials until the strategy waits, then finish the oldest, like Tune with unlimited slots;
    returns the GA generation of each row."""
    history = read_history(csv_path)
    live, generations = {}, []
    i = 0
    while len(history) < n_rows:
        hyp = strategy.propose(f"t{i}", history)
        if hyp is not None:
            live[f"t{i}"] = hyp
            i += 1
            continue
        trial_id = next(iter(live))
        hyp = live.pop(trial_id)
        results = results_for(hyp["hsv_s"])  # mAP@.5 = hsv_s: selection prefers high saturation gain
        append_row(csv_path, results, hyp)
        history = read_history(csv_path)
        generations.append(strategy.generation)
        strategy.tell(trial_id, hyp, results)
    return generations


@pytest.mark.timeout(30)
def test_generation_barrier_and_breeding_from_the_whole_generation(tmp_path):
    hyp, meta = upstream_space()
    csv_path = tmp_path / "evolve.csv"
    s = PopulationStrategy(hyp, meta, 12, 3, read_history(csv_path), tmp_path, size=4)
    proposals = [s.propose(f"a{i}", pd.DataFrame()) for i in range(4)]
    assert proposals[0] == hyp  # the base first
    assert s.propose("a4", pd.DataFrame()) is None  # all 4 proposed, none finished: wait
    for i, p in enumerate(proposals[:3]):
        s.tell(f"a{i}", p, results_for(0.1 * i))
        assert s.propose(f"b{i}", pd.DataFrame()) is None  # still waiting for the 4th
    first = s.population.copy()
    s.tell("a3", proposals[3], results_for(0.05))
    child = s.propose("c0", pd.DataFrame())
    assert child is not None and s.generation == 1
    expected = breed(first, [0.0, 0.1, 0.2, 0.05], 0, 3, s.low, s.high, np.random.default_rng([3, 1]))
    np.testing.assert_allclose(s.population, expected, rtol=1e-4)  # held at %.5g
    saved = load_yaml(tmp_path / POPULATION_FILE)
    assert list(saved)[0] == "gen1number0" and len(saved) == 4
    for key, (_, low, high) in meta.items():
        assert low <= child[key] <= high or key not in s.keys
    assert all(child[k] == hyp[k] for k in hyp if k not in s.keys)  # disabled keys keep the base


@pytest.mark.timeout(60)
def test_resume_mid_generation_trains_exactly_the_untrained_individuals(tmp_path):
    hyp, meta = upstream_space()
    straight = tmp_path / "straight"
    straight.mkdir()
    uninterrupted = PopulationStrategy(hyp, meta, 10, 7, pd.DataFrame(), straight, size=4)
    generations = drive(uninterrupted, straight / "evolve.csv", 10)
    assert generations == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]  # rows g·P .. (g+1)·P - 1 are generation g

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    first = PopulationStrategy(hyp, meta, 10, 7, pd.DataFrame(), resumed, size=4)
    drive(first, resumed / "evolve.csv", 6)  # the driver dies with 2 of generation 1 still training
    second = PopulationStrategy(hyp, meta, 10, 7, read_history(resumed / "evolve.csv"), resumed, size=4)
    assert second.generation == 1 and len(second.queue) == 2
    drive(second, resumed / "evolve.csv", 10)

    a, b = read_history(straight / "evolve.csv"), read_history(resumed / "evolve.csv")
    assert len(b) == 10
    key = list(second.keys)
    for lo, hi in ((0, 4), (4, 8), (8, 10)):  # every generation holds the same individuals either way
        assert sorted(map(tuple, a[key].iloc[lo:hi].to_numpy())) == sorted(map(tuple, b[key].iloc[lo:hi].to_numpy()))


@pytest.mark.timeout(30)
def test_failed_individual_is_replaced_so_the_generation_completes(tmp_path):
    hyp, meta = upstream_space()
    s = PopulationStrategy(hyp, meta, 8, 0, pd.DataFrame(), tmp_path, size=3)
    proposals = [s.propose(f"t{i}", pd.DataFrame()) for i in range(3)]
    s.tell("t1", proposals[1], None)  # failed: no row
    replacement = s.propose("t3", pd.DataFrame())
    assert replacement is not None and replacement != proposals[1]
    assert all(meta[k][1] <= replacement[k] <= meta[k][2] for k in s.keys)
    for trial_id, p in (("t0", proposals[0]), ("t2", proposals[2])):
        s.tell(trial_id, p, results_for(0.2))
    assert s.propose("t4", pd.DataFrame()) is None  # the replacement is still training
    s.tell("t3", replacement, results_for(0.3))
    assert s.propose("t5", pd.DataFrame()) is not None and s.generation == 1


@pytest.mark.timeout(10)
def test_population_needs_two_individuals_and_two_enabled_keys(tmp_path):
    hyp, meta = upstream_space()
    with pytest.raises(UserError, match="--population 1: a population needs at least 2 individuals"):
        PopulationStrategy(hyp, meta, 8, 0, pd.DataFrame(), tmp_path, size=1)
    one_key = {"hsv_h": (1.0, 0.0, 0.1), "lr0": (0.0, 1e-5, 0.1)}
    with pytest.raises(UserError, match="at least 2 enabled keys"):
        PopulationStrategy(hyp, one_key, 8, 0, pd.DataFrame(), tmp_path, size=4)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("damage", ["deleted", "garbled"])
def test_resume_without_a_usable_population_file_breeds_from_evolve_csv(tmp_path, damage):
    hyp, meta = upstream_space()
    drive(PopulationStrategy(hyp, meta, 10, 2, pd.DataFrame(), tmp_path, size=4), tmp_path / "evolve.csv", 6)
    if damage == "deleted":
        (tmp_path / POPULATION_FILE).unlink()
    else:
        (tmp_path / POPULATION_FILE).write_text("gen1numberx: {hsv_h: 1}\ngen1number0: {hsv_h: abc}\n")
    history = read_history(tmp_path / "evolve.csv")
    s = PopulationStrategy(hyp, meta, 10, 2, history, tmp_path, size=4)
    assert s.generation == 1 and len(s.queue) == 2  # the 2 trained rows of generation 1 keep their places
    trained = {tuple(g) for g in s._genes(history.iloc[4:6])}
    assert trained <= {tuple(g) for g in s.population}
    drive(s, tmp_path / "evolve.csv", 10)
    after = read_history(tmp_path / "evolve.csv")
    assert len(after) == 10 and after.iloc[:6].equals(history)
