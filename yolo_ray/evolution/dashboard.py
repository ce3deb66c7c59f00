"""Evolution progress as Ray metrics, so the Ray dashboard's Metrics view (and Prometheus) can chart it.

Exported by the driver's node as `ray_yolo_ray_evolve_*` series, each tagged with the run's name so
several evolutions on one cluster stay apart.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback


class EvolveMetrics(Callback):
    """Gauges of rows written, best fitness, failed and running trials, refreshed on every trial event.

    `searcher` is the run's EvolveSearcher: its rows, best_fitness and failed counts are the truth
    (failed includes NaN trials that Tune itself saw finish normally).
    """

    def __init__(self, run_name: str, searcher: Any):
        from ray.util.metrics import Gauge

        self.searcher = searcher
        self._running_ids: set[str] = set()
        tags = {"run": run_name}
        self.gauges = {}
        for name, description in (
            ("rows", "evolve.csv rows written (generations done)"),
            ("best_fitness", "best fitness in evolve.csv (0.1 mAP@.5 + 0.9 mAP@.5:.95)"),
            ("trials_failed", "trials that failed (errors after retries, NaN/inf results)"),
            ("trials_running", "trials running now"),
        ):
            gauge = Gauge(f"yolo_ray_evolve_{name}", description=description, tag_keys=("run",))
            gauge.set_default_tags(tags)
            self.gauges[name] = gauge
        self.publish()

    def publish(self) -> None:
        best = self.searcher.best_fitness
        values = {
            "rows": self.searcher.rows,
            "best_fitness": best if best == best else 0.0,  # NaN: no row yet
            "trials_failed": self.searcher.failed,
            "trials_running": self.running,
        }
        for name, value in values.items():
            self.gauges[name].set(float(value))

    # Running trials by id: Tune calls on_trial_recover then on_trial_start again for a retried trial,
    # so counting starts and ends would drift up by one per retry.
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._running_ids.add(trial.trial_id)
        self.publish()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._ended(trial)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ended(trial)

    def _ended(self, trial: Any) -> None:
        self._running_ids.discard(trial.trial_id)
        self.publish()

    @property
    def running(self) -> int:
        return len(self._running_ids)
