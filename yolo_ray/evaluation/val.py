"""val.py's run, as upstream v7.0's val.run: evaluate a model (or ensemble) on a data split, print the
table and speed line, write plots, YOLO txt labels and COCO json (scored when annotations exist)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from yolo_ray.config import UserError
from yolo_ray.console import Progress
from yolo_ray.data import create_dataloader
from yolo_ray.evaluation.evaluate import BatchOutput, Evaluation, evaluate
from yolo_ray.evaluation.writers import COCO91_IDS, COCO_ANNOTATIONS, append_labels, coco_evaluate, coco_records
from yolo_ray.evaluation.plots import plot_evaluation, plot_val_batch
from yolo_ray.models.loading import load_models, model_stride
from yolo_ray.console import LOGGER

TASKS = ("train", "val", "test", "speed", "study")
HEADER = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
ROW = "%22s" + "%11i" * 2 + "%11.3g" * 4
PER_CLASS_MAX_NC = 50  # standalone val.py lists every class below this many, as upstream
FINAL_IOU_COCO, FINAL_IOU = 0.65, 0.6  # end of training: pycocotools scores best at IoU 0.65 on COCO


def is_coco(data: dict[str, Any]) -> bool:
    """Upstream's test: the val split is COCO's val2017.txt."""
    return any(str(p).endswith(os.path.join("coco", "val2017.txt")) for p in data["val"])


def table_lines(ev: Evaluation, names: dict[int, str], verbose: bool) -> list[str]:
    """The header, the `all` row, and per-class rows when verbose (and there are several classes)."""
    mp, mr, map50, map5095 = ev.results[:4]
    lines = [HEADER, ROW % ("all", ev.seen, ev.nt.sum(), mp, mr, map50, map5095)]
    if ev.nt.sum() == 0:
        lines.append("WARNING: no labels found in the validation set, can not compute metrics without labels")
    if verbose and len(names) > 1 and ev.ap is not None:
        for i, c in enumerate(ev.ap.classes):
            lines.append(
                ROW
                % (
                    names.get(int(c), str(c)),
                    ev.seen,
                    ev.nt[c],
                    ev.ap.p[i],
                    ev.ap.r[i],
                    ev.ap.ap[i, 0],
                    ev.ap.ap[i].mean(),
                )
            )
    return lines


def speed_line(times: tuple[float, float, float], images: int, shape: tuple[int, ...]) -> str:
    per_image = tuple(t / max(images, 1) * 1e3 for t in times)
    return ("Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape " % per_image) + str(shape)


class _BatchWriter:
    """Per-batch outputs: val_batch plots, YOLO txt labels, COCO records."""

    def __init__(
        self,
        save_dir: Path,
        names: dict[int, str],
        plots: bool,
        save_txt: bool,
        save_conf: bool,
        save_json: bool,
        class_ids: tuple[int, ...] | None,
    ):
        self.save_dir, self.names, self.plots = save_dir, names, plots
        self.save_txt, self.save_conf, self.save_json = save_txt, save_conf, save_json
        self.class_ids = class_ids
        self.records: list[dict] = []

    def __call__(self, batch: BatchOutput) -> None:
        if self.plots:
            plot_val_batch(batch, self.names, self.save_dir)
        for predn, path, shapes in zip(batch.native, batch.paths, batch.shapes):
            if self.save_txt:
                append_labels(self.save_dir / "labels" / f"{Path(path).stem}.txt", predn, shapes[0], self.save_conf)
            if self.save_json:
                self.records += coco_records(predn, path, self.class_ids)


def run(
    model: nn.Module,
    data: dict[str, Any],
    save_dir: Path,
    task: str = "val",
    imgsz: int = 640,
    batch_size: int = 32,
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    single_cls: bool = False,
    half: bool = True,
    verbose: bool = False,
    save_txt: bool = False,
    save_conf: bool = False,
    save_json: bool = False,
    plots: bool = True,
    workers: int = 8,
    loader: Any = None,
    compute_loss: Callable | None = None,
    training: bool = False,
    weights_name: str = "model",
    augment: bool = False,
    save_hybrid: bool = False,
) -> Evaluation:
    """Validate and report; with training=True (end of a run) the speed line and save message are left out.

    model: a DetectionModel (training) or a Backend (val.py: any weights format; non-PyTorch ones run
    batch 1 square images, as upstream). save_hybrid: labels join the predictions before NMS and the txt
    files hold both (upstream's autolabelling; its mAP is not the model's)."""
    names = model.names
    nc = check_model_data(model, data, task, single_cls, weights_name)
    save_txt |= save_hybrid
    if save_txt:
        (save_dir / "labels").mkdir(parents=True, exist_ok=True)
    if loader is None:
        pt = getattr(model, "pt", True)
        if not pt:
            batch_size = 1
            LOGGER.info(f"Forcing --batch-size 1 square inference (1,3,{imgsz},{imgsz}) for non-PyTorch models")
        split = task if task in ("train", "val", "test") else "val"
        pad, rect = (0.0, False) if task == "speed" else (0.5, pt)
        loader = create_dataloader(
            data[split],
            imgsz,
            batch_size,
            model_stride(model),
            single_cls,
            pad=pad,
            rect=rect,
            workers=workers,
            prefix=f"{split}: ",
            nc=nc,
        )[0]
    coco = is_coco(data)
    writer = _BatchWriter(save_dir, names, plots, save_txt, save_conf, save_json, COCO91_IDS if coco else None)
    progress = Progress(len(loader), HEADER, final_line=False)  # a bar under the header on a terminal
    ev = evaluate(
        model,
        progress.iterate(loader),
        nc,
        compute_loss,
        conf_thres,
        iou_thres,
        max_det,
        single_cls,
        half,
        confusion=plots,
        on_batch=writer,
        augment=augment,
        hybrid=save_hybrid,
    )
    lines = table_lines(ev, names, verbose or (nc < PER_CLASS_MAX_NC and not training))
    print("\n".join(lines[1:] if progress.live else lines))
    if not training:
        print(speed_line(ev.times, ev.seen, (batch_size, 3, imgsz, imgsz)))
    if plots:
        plot_evaluation(ev, names, save_dir)
    if save_json:
        ev = _save_and_score_json(ev, writer.records, data, save_dir, weights_name, loader, coco)
    if not training:
        count = len(list(save_dir.glob("labels/*.txt")))
        saved = f"\n{count} labels saved to {save_dir / 'labels'}" if save_txt else ""
        LOGGER.info(f"Results saved to {save_dir}{saved}")
    return ev


def check_model_data(
    model: nn.Module, data: dict[str, Any], task: str, single_cls: bool, weights_name: str = "model"
) -> int:
    """The class count to validate with; a UserError when the model's classes or the split do not fit."""
    nc = 1 if single_cls else int(data["nc"])
    if model.nc != nc and not single_cls:
        raise UserError(
            f"{weights_name} has {model.nc} classes but --data {data.get('yaml_file', '')} "
            f"has {nc}: pass the --data the model was trained on"
        )
    split = task if task in ("train", "val", "test") else "val"
    if split not in data:
        raise UserError(f"{data.get('yaml_file', '--data')}: has no '{split}' split for --task {task}")
    return nc


def _save_and_score_json(
    ev: Evaluation,
    records: list[dict],
    data: dict[str, Any],
    save_dir: Path,
    weights_name: str,
    loader: Any,
    coco: bool,
) -> Evaluation:
    pred_json = save_dir / f"{Path(weights_name).stem}_predictions.json"
    anno_json = Path(data["path"]) / COCO_ANNOTATIONS
    LOGGER.info(f"\nEvaluating COCO mAP... saving {pred_json}...")
    pred_json.write_text(json.dumps(records))
    if not anno_json.is_file():
        LOGGER.info(f"COCO evaluation skipped: no annotations at {anno_json}")
        return ev
    image_ids = [int(Path(f).stem) for f in loader.dataset.im_files] if coco else None
    scores = coco_evaluate(anno_json, pred_json, image_ids)
    if scores is None:
        return ev
    map5095, map50 = scores
    ev.results = (*ev.results[:2], map50, map5095, *ev.results[4:])
    return ev


def final_validation(
    best: Path,
    data: dict[str, Any],
    loader: Any,
    single_cls: bool,
    save_dir: Path,
    plots: bool,
    compute_loss: Callable | None,
    device: torch.device,
) -> tuple[float, ...]:
    """End of training, as upstream: best.pt fused (fp16 on CUDA), IoU 0.65 on COCO else 0.6, per-class
    table, plots and (COCO) json into the run. Returns the 7 validation results."""
    LOGGER.info(f"\nValidating {best}...")
    model = load_models(best, device, fuse=True)
    coco = is_coco(data)
    ev = run(
        model,
        data,
        save_dir,
        iou_thres=FINAL_IOU_COCO if coco else FINAL_IOU,
        single_cls=single_cls,
        half=device.type == "cuda",
        verbose=True,
        save_json=coco,
        plots=plots,
        loader=loader,
        compute_loss=compute_loss,
        training=True,
        weights_name=best.name,
    )
    return ev.results
