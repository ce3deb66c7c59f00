"""Which waiting trial Tune starts next: the newest, so a finished trial's process goes to a trial without one.

With reuse_actors, Tune hands the process of a finished trial to the trial its scheduler picks. Its
FIFO order picks the oldest waiting trial, which already waits for a process of its own that is
still starting (a Ray worker importing Ray Tune takes seconds); Tune then kills that half-started
process, and the next new trial asks for another one. Whenever trials end faster than a process
starts (short trials, a busy node), no trial process beyond the first ever finishes starting and
the evolution runs one trial at a time. Picking the newest waiting trial, which has asked for no
process yet, lets the processes that are starting finish; otherwise the order changes nothing: the
searcher has already fixed every trial's hyps, and a slot runs whichever trial it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler


class _NewestWaitingFirst:
    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        trials = tune_controller.get_trials()
        for status in (Trial.PENDING, Trial.PAUSED):  # as FIFO: a new trial before a paused one
            for trial in reversed(trials):
                if trial.status == status:
                    return trial
        return None


class NewestFirstScheduler(_NewestWaitingFirst, FIFOScheduler):
    """Tune's default scheduler, newest waiting trial first."""


class NewestFirstASHA(_NewestWaitingFirst, ASHAScheduler):
    """ASHA early stopping, newest waiting trial first."""


def trial_scheduler(early_stop: bool, epochs: int) -> TrialScheduler:
    """The evolution's scheduler: with early_stop, ASHA on per-epoch fitness (trials in the bottom two
    thirds at a rung stop; a quarter of the epochs first).

    One report per epoch, then the completion report: max_t = epochs + 1, or ASHA would stop every
    trial at its last epoch, before the report that makes it a row.
    """
    if not early_stop:
        return NewestFirstScheduler()
    return NewestFirstASHA(
        time_attr="training_iteration",
        metric="fitness",
        mode="max",
        max_t=epochs + 1,
        grace_period=max(1, epochs // 4),
        reduction_factor=3,
    )
