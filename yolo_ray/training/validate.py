"""Validation during training, as upstream's val.run does it for train.py: P, R, mAP and val losses."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
from torch import nn

from yolo_ray.evaluation.evaluate import evaluate


def validate(
    model: nn.Module,
    loader: Iterable,
    nc: int,
    compute_loss: Callable | None = None,
    show: bool = False,
    **options: Any,
) -> tuple[tuple[float, ...], np.ndarray]:
    """((P, R, mAP@.5, mAP@.5:.95, val box, obj, cls loss), per-class mAP@.5:.95 of length nc).

    The same evaluation as val.py (yolo_ray.evaluation.evaluate, which documents the options: thresholds,
    single_cls, half, autocast_dtype, memory_format), without val.py's plots and per-class table.
    show: as upstream's train.py, progress under val.py's header, then the header and the `all` row.
    """
    progress = None
    if show:
        from yolo_ray.console import Progress
        from yolo_ray.evaluation.val import HEADER

        progress = Progress(len(loader), HEADER, final_line=False)  # type: ignore[arg-type]
        loader = progress.iterate(loader)
    result = evaluate(model, loader, nc, compute_loss, **options)
    if progress is not None:
        from yolo_ray.console import FILE_ONLY, LOGGER
        from yolo_ray.evaluation.val import table_lines

        header, *rows = table_lines(result, {}, verbose=False)
        LOGGER.info(header, extra=FILE_ONLY if progress.live else None)  # a live bar showed the header already
        LOGGER.info("\n".join(rows))
    return result.results, result.maps
