"""Evolution progress reaches Ray's metrics endpoint (what the dashboard's Metrics view and Prometheus read)."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest


class SearcherState:
    rows, best_fitness, failed = 7, 0.625, 2


class Trial:
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def test_running_trials_gauge_does_not_drift_when_a_trial_is_retried():
    from yolo_ray.evolution.dashboard import EvolveMetrics

    metrics = EvolveMetrics("exp-drift-test", SearcherState())
    for event in ("start", "recover", "start", "recover", "start"):  # Tune's calls for a trial retried twice
        getattr(metrics, f"on_trial_{event}")(0, [], Trial("a"))
    metrics.on_trial_start(0, [], Trial("b"))
    assert metrics.running == 2
    metrics.on_trial_complete(0, [], Trial("a"))
    metrics.on_trial_error(0, [], Trial("b"))
    assert metrics.running == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_evolve_metrics_are_exported_by_the_drivers_node(ray_cluster):
    from yolo_ray.evolution.dashboard import EvolveMetrics

    metrics = EvolveMetrics("exp-metrics-test", SearcherState())
    metrics.on_trial_start(0, [], Trial("a"))
    metrics.on_trial_start(0, [], Trial("b"))
    metrics.on_trial_complete(0, [], Trial("a"))
    here = ray_cluster.get_runtime_context().get_node_id()
    port = next(n["MetricsExportPort"] for n in ray_cluster.nodes() if n["NodeID"] == here)
    expected = {"rows": 7.0, "best_fitness": 0.625, "trials_failed": 2.0, "trials_running": 1.0}
    found: dict[str, float] = {}
    deadline = time.time() + 90  # the node's agent exports on an interval of several seconds
    while set(found) != set(expected) and time.time() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        for name in expected:
            m = re.search(rf'^ray_yolo_ray_evolve_{name}\{{[^}}]*run="exp-metrics-test"[^}}]*\}} (\S+)$', text, re.M)
            if m:
                found[name] = float(m.group(1))
        time.sleep(2)
    assert found == expected
