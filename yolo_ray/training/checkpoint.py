"""Training checkpoints (tensors and plain types only) and upstream's results.csv."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from yolo_ray.config import replacing
from yolo_ray.console import LOGGER
from yolo_ray.scores import RESULTS_CSV_KEYS


def half_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy with floating tensors in fp16, as upstream stores model and EMA weights."""
    return {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).cpu().clone()
        for k, v in model.state_dict().items()
    }


def build_checkpoint(
    epoch: int,
    best_fitness: float,
    model: nn.Module,
    ema_model: nn.Module,
    ema_updates: int,
    optimizer: torch.optim.Optimizer,
    opt: dict[str, Any],
    training_done: bool = False,
) -> dict[str, Any]:
    """Upstream's v7.0 last.pt layout with state dicts instead of pickled modules.

    `model` must be the bare model (not DDP); its yaml and names ride along so the file stands alone.
    training_done: no epoch follows (the last one, or early stopping): a restart or resume from this
    file goes straight to the end-of-training steps.
    """
    return {
        "epoch": epoch,
        "best_fitness": float(best_fitness),
        "model": half_state_dict(model),
        "ema": half_state_dict(ema_model),
        "updates": ema_updates,
        "optimizer": optimizer.state_dict(),
        "opt": plain_options(opt),
        "yaml": getattr(model, "yaml", None),
        "names": getattr(model, "names", None),
        "date": datetime.now().isoformat(),
        "training_done": bool(training_done),
    }


def plain_options(opt: dict[str, Any]) -> dict[str, Any]:
    """The options that survive torch.load(weights_only=True): drop objects like shared decoded images."""
    plain = (str, int, float, bool, type(None))

    def is_plain(v: Any) -> bool:
        if isinstance(v, plain):
            return True
        if isinstance(v, (list, tuple)):
            return all(is_plain(x) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and is_plain(x) for k, x in v.items())
        return False

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in opt.items() if is_plain(v)}


def restart_checkpoint(last: Path, run_id: str | None) -> str | None:
    """last.pt when an earlier attempt of this same run (run_id) saved it, else None.

    Ray Train restarts the train function from the start after a worker or node failure; this is how
    it picks up at the epoch after the last save rather than at epoch 0, or, when the failure came
    after the last epoch, at the end-of-training steps (a last.pt stripped by them holds the final
    results: only the upload is left). The run_id check keeps a fresh run with --exist-ok from taking
    over an old run's last.pt; a file that cannot be read (torn by a kill mid-write elsewhere) is none.
    """
    if not run_id or not Path(last).is_file():
        return None
    try:
        ckpt = load_training_checkpoint(last)
    except Exception as e:  # torch raises several types for torn files
        LOGGER.warning(f"WARNING: cannot read {last} to restart from ({type(e).__name__}); starting over")
        return None
    opt = ckpt.get("opt") or {}
    if opt.get("run_id") != run_id:
        return None
    if ckpt.get("final_results") is not None:
        LOGGER.info(f"Restarting after the end of training ({last} is final): finishing the upload")
        return str(last)
    if ckpt.get("optimizer") is None or ckpt.get("epoch", -1) < 0:
        return None
    step = "the end-of-training steps" if ckpt.get("training_done") else f"epoch {ckpt['epoch'] + 1}"
    LOGGER.info(f"Restarting from {last} at {step} (epoch {ckpt['epoch']} was saved before the failure)")
    return str(last)


def save_checkpoint(ckpt: dict[str, Any], path: Path) -> None:
    """Write atomically: a kill mid-save leaves the previous file intact, never a torn one."""
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)  # in memory first: torch's file writer reports a full disk as "unexpected pos"
    with replacing(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def strip_optimizer(path: str | Path, final_results: dict[str, float] | None = None) -> None:
    """Keep only the EMA weights (as 'model') for inference/fine-tuning, as upstream does at the end.

    Like upstream, epoch -1 and no best_fitness mark the file as finished weights: loading it starts
    fresh (--weights), it is not a run to resume. Stripping a stripped file changes nothing, so the
    end-of-training steps can run again after a failure. final_results (last.pt, the last step before
    the upload): what the run returns, kept so a restart after a failed upload need not validate again.
    """
    ckpt = load_training_checkpoint(path)
    if ckpt.get("ema") is not None:
        ckpt["model"] = ckpt["ema"]
    for key in ("optimizer", "best_fitness", "ema", "updates"):
        ckpt[key] = None
    ckpt["epoch"] = -1
    if final_results is not None:
        ckpt["final_results"] = {k: float(v) for k, v in final_results.items()}
    save_checkpoint(ckpt, Path(path))


def results_header() -> str:
    return ("%20s," * len(RESULTS_CSV_KEYS) % RESULTS_CSV_KEYS).rstrip(",")


def append_results_row(csv_path: Path, epoch: int, values: Sequence[float]) -> None:
    """One row: epoch, 3 train losses, 7 val results, 3 lrs, formatted like upstream's logger."""
    row = [epoch, *values]
    if len(row) != len(RESULTS_CSV_KEYS):
        raise ValueError(f"results row has {len(row)} values, expected {len(RESULTS_CSV_KEYS)}")
    prefix = "" if csv_path.exists() else results_header() + "\n"
    with open(csv_path, "a") as f:
        f.write(prefix + ("%20.5g," * len(row) % tuple(row)).rstrip(",") + "\n")


def truncate_results(csv_path: Path, last_epoch: int) -> None:
    """Drop rows after `last_epoch` (and a torn last line) left by a run killed after its last save."""
    if not csv_path.exists():
        return
    lines = csv_path.read_text().splitlines()
    kept = lines[:1]
    for line in lines[1:]:
        fields = line.split(",")
        try:
            epoch = int(float(fields[0]))
        except ValueError:
            continue
        if len(fields) == len(RESULTS_CSV_KEYS) and epoch <= last_epoch:
            kept.append(line)
    csv_path.write_text("".join(line + "\n" for line in kept))
