"""The end of each epoch and of training, on a run's RunState: schedule, validate, log, save and report
after every epoch; slim checkpoints, final validation of best.pt, plots and the final results at the end.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from yolo_ray.cluster.session import broadcast_from_main, report
from yolo_ray.console import LOGGER
from yolo_ray.loss import ComputeLoss
from yolo_ray.scores import RESULT_KEYS, RESULTS_CSV_KEYS, fitness
from yolo_ray.training.checkpoint import (
    append_results_row,
    build_checkpoint,
    save_checkpoint,
    strip_optimizer,
)
from yolo_ray.training.precision import Precision
from yolo_ray.training.run_state import RunState
from yolo_ray.training.validate import validate

EMA_ATTRS = ("yaml", "nc", "hyp", "names", "stride", "class_weights")


def end_epoch(run: RunState, epoch: int, mloss: torch.Tensor) -> bool:
    """Schedule, validate, log, save, report; True when training stops here."""
    opt, ctx = run.opt, run.ctx
    lr = [group["lr"] for group in run.optimizer.param_groups]
    run.scheduler.step()
    final_epoch = epoch + 1 == run.epochs or run.stopper.possible_stop
    validated = not run.noval or final_epoch or bool(opt["report_every_epoch"])
    fi = 0.0
    if ctx.is_main:
        run.ema.update_attr(run.bare, include=EMA_ATTRS)
        if validated:
            run.results, run.maps = _validate(
                run.ema.ema,
                run.val_loader,
                run.nc,
                run.compute_loss,
                bool(opt["single_cls"]),
                run.precision,
                not run.evolve,
            )
        fi = float(fitness(np.array(run.results).reshape(1, -1))[0])
    fi = broadcast_from_main(fi, ctx)
    stop = run.stopper(epoch=epoch, fitness=fi)  # same inputs on every rank: all stop together
    run.best_fitness = max(run.best_fitness, fi)
    row = [*mloss.tolist(), *run.results, *lr]
    if ctx.is_main:
        _save_epoch(run, epoch, row, fi, final_epoch, training_done=stop or epoch + 1 == run.epochs)
    if validated:
        report(ctx, {**dict(zip(RESULTS_CSV_KEYS[1:], row)), "fitness": fi, "epoch": epoch})
    return stop


def _save_epoch(run: RunState, epoch: int, row: list[float], fi: float, final_epoch: bool, training_done: bool) -> None:
    """Rank 0: the results.csv row, the trackers, last.pt (best.pt, epochN.pt) and the upload."""
    append_results_row(run.results_csv, epoch, row)
    if run.trackers is not None:
        run.trackers.log_epoch(epoch, row)
    if not run.nosave or (final_epoch and not run.evolve):
        ckpt = build_checkpoint(
            epoch,
            run.best_fitness,
            run.bare,
            run.ema.ema,
            run.ema.updates,
            run.optimizer,
            run.opt,
            training_done=training_done,
        )
        save_checkpoint(ckpt, run.last)
        if run.best_fitness == fi:
            save_checkpoint(ckpt, run.best)
        if run.opt["save_period"] > 0 and epoch % run.opt["save_period"] == 0:
            save_checkpoint(ckpt, run.weights_dir / f"epoch{epoch}.pt")
    if run.uploader is not None:
        run.uploader.upload()


def finish_training(run: RunState, epoch: int, t0: float) -> dict[str, float] | None:
    """After training (rank 0): slim checkpoints, re-check best.pt, plots, final results."""
    if not run.ctx.is_main:
        return None
    LOGGER.info(f"\n{epoch - run.start_epoch + 1} epochs completed in {(time.time() - t0) / 3600:.3f} hours.")
    # Each step can be done again: until last.pt is stripped (with the results, the step before the
    # upload) a restart after a failure here comes back to this point, not to epoch 0.
    results = run.results
    if run.best.exists():
        strip_optimizer(run.best)
    if run.best.exists() and not run.evolve:
        from yolo_ray.evaluation.val import final_validation  # matplotlib and val's writers only when needed

        results = final_validation(
            run.best,
            run.data,
            run.val_loader,
            bool(run.opt["single_cls"]),
            run.save_dir,
            run.plots,
            run.compute_loss,
            run.device,
        )
    if run.plots:
        _plot_results(run.results_csv)
    final = {
        **dict(zip(RESULT_KEYS, results)),
        "fitness": float(fitness(np.array(results).reshape(1, -1))[0]),
        "epoch": epoch,
    }
    if run.last.exists():
        strip_optimizer(run.last, final_results=final)
    if run.trackers is not None:
        run.trackers.finish(epoch)
    if run.uploader is not None:
        run.uploader.upload()
    LOGGER.info(f"Results saved to {run.opt['storage_uri'] or run.save_dir}")
    return final


def _validate(
    model: nn.Module, loader, nc: int, compute_loss: ComputeLoss, single_cls: bool, precision: Precision, show: bool
) -> tuple[tuple[float, ...], np.ndarray]:
    # fp16 weights on CUDA as upstream (half=amp); fp32 on CPU, where bf16 boxes would cost mAP@.95 accuracy
    return validate(
        model,
        loader,
        nc,
        compute_loss,
        show,
        single_cls=single_cls,
        half=precision.dtype == torch.float16,
        memory_format=precision.memory_format,
    )


def _plot_results(results_csv: Path) -> None:
    from yolo_ray.training.plots import plot_results  # matplotlib only when a run plots

    plot_results(results_csv)
