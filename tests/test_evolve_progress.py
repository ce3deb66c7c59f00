"""The evolution driver's fast paths give what the plain ones give: rows kept in memory, evolve.png on a thread."""

from __future__ import annotations

import pytest
import yaml

from yolo_ray.config import load_hyp
from yolo_ray.evolution import EVOLVE_RESULT_KEYS, read_history, write_hyp_evolve
from yolo_ray.evolution.progress import EvolveProgress
from yolo_ray.evolution.searcher import COMPLETE_KEY, EvolveSearcher
from yolo_ray.evolution.space import load_search_space


@pytest.fixture(autouse=True)
def private_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))


def results_for(i: int) -> dict[str, float]:
    m = 0.1 + (i * 37 % 11) / 20
    return dict(zip(EVOLVE_RESULT_KEYS, [0.5, 0.5, m, m / 2, 0.05, 0.04, 0.03]))


@pytest.mark.timeout(60)
def test_rows_in_memory_write_what_evolve_csv_gives_and_the_last_row_is_plotted(tmp_path):
    hyp = {**load_hyp(), "anchors": 3.0}
    generations = 12
    searcher = EvolveSearcher(tmp_path / "evolve.csv", hyp, load_search_space(), generations, seed=0)
    progress = EvolveProgress(tmp_path, generations, 0, history=lambda: searcher.history)
    searcher.on_row = progress
    for i in range(generations):
        searcher.suggest(str(i))
        searcher.on_trial_complete(str(i), {**results_for(i), COMPLETE_KEY: True})
        if i == generations // 2:  # the frame built through numpy equals what evolve.csv reads back
            assert searcher.history.equals(read_history(tmp_path / "evolve.csv"))
    written = (tmp_path / "hyp_evolve.yaml").read_text()
    write_hyp_evolve(tmp_path / "evolve.csv", tmp_path / "from_csv.yaml")
    assert written == (tmp_path / "from_csv.yaml").read_text()
    assert "# Last generation: 11\n" in written and yaml.safe_load(written)
    progress.refresh()  # waits for the plot the last row started on its thread
    png = tmp_path / "evolve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = png.stat().st_mtime_ns
    progress.refresh()  # nothing new: not drawn again
    assert png.stat().st_mtime_ns == drawn
