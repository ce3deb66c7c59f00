"""Run directories: where a training run writes, how it is found again to resume it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolo_ray.config import UserError, load_yaml, save_yaml


def find_last_checkpoint(search_dir: str | Path) -> Path:
    """The most recently written last*.pt under search_dir (what a bare --resume continues)."""
    search_dir = Path(search_dir)
    candidates = list(search_dir.rglob("last*.pt")) if search_dir.is_dir() else []
    if not candidates:
        raise UserError(f"{search_dir}: no last.pt found to resume; pass --resume path/to/last.pt")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def resume_checkpoint(resume: str | Path) -> Path:
    """The last.pt that --resume PATH names: a checkpoint, or a run folder (its weights/last.pt).

    A resume writes into the checkpoint's run folder (the parent of its weights/), so a checkpoint that
    does not sit in RUN/weights/ beside RUN/opt.yaml is refused: a copy kept elsewhere would otherwise
    overwrite an unrelated run's weights, or spill a run's files into the folder holding every run.
    """
    path = Path(resume).expanduser().resolve()
    if path.is_dir():
        if not (path / "weights" / "last.pt").is_file():
            raise UserError(f"{path}: --resume folder holds no weights/last.pt (not a training run folder)")
        path = path / "weights" / "last.pt"
    if not path.is_file():
        raise UserError(f"{path}: --resume checkpoint not found")
    if path.parent.name != "weights" or not (path.parent.parent / "opt.yaml").is_file():
        raise UserError(
            f"{path}: --resume checkpoint is not in a run folder (RUN/weights/last.pt beside "
            "RUN/opt.yaml), so there is no run of its own to continue; copy the whole run folder"
        )
    return path


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run directory holding <run>/weights/last.pt."""
    return Path(checkpoint).resolve().parent.parent


def save_run_files(save_dir: str | Path, opt: dict[str, Any], hyp: dict[str, float]) -> None:
    """opt.yaml (every option, enough to resume) and hyp.yaml (the unscaled hyperparameters)."""
    save_dir = Path(save_dir)
    save_yaml(save_dir / "hyp.yaml", hyp)
    save_yaml(save_dir / "opt.yaml", opt)


def load_resume_state(checkpoint: str | Path) -> tuple[dict[str, Any], int]:
    """(the run's options, the last finished epoch) for resuming from a last.pt.

    Options come from the opt.yaml beside the weights folder, else from the checkpoint itself (as
    upstream v7.0 falls back to ckpt['opt']).
    """
    from yolo_ray.training.checkpoint import load_training_checkpoint

    try:
        ckpt = load_training_checkpoint(checkpoint)
    except Exception as e:  # torch raises several types for foreign or torn files
        raise UserError(f"{checkpoint}: not a readable yolo_ray training checkpoint ({type(e).__name__})") from None
    opt_yaml = run_dir_of(checkpoint) / "opt.yaml"
    if opt_yaml.is_file():
        opt = load_yaml(opt_yaml)
    else:
        opt = ckpt.get("opt")
    if not isinstance(opt, dict):
        raise UserError(f"{opt_yaml}: missing or not a mapping, and {checkpoint} holds no options to resume with")
    return opt, int(ckpt.get("epoch", -1))
