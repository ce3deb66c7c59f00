"""Validate trained YOLOv5 weights (one model, or several as an ensemble) on a dataset split.

python scripts/val.py --weights runs/train/exp/weights/best.pt                    # built-in data
python scripts/val.py --weights best.pt --data coco128.yaml --imgsz 640 --verbose
python scripts/val.py --weights a.pt b.pt --data coco128.yaml                      # ensemble
python scripts/val.py --weights best.pt --task speed                               # timing only
python scripts/val.py --weights best.pt --prune 0.3                                # mAP after pruning
python scripts/val.py --weights best.pt --augment                                  # test-time augmentation
python scripts/val.py --weights best.onnx --imgsz 640                              # an export
python scripts/val.py --weights best.pt --task study                               # mAP and speed by size
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from yolo_ray.cli import (
    OneLineParser,
    add_console_options,
    add_model_options,
    check_fraction,
    check_minimums,
    new_run_dir,
    start_logging,
)
from yolo_ray.config import UserError
from yolo_ray.paths import check_project


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description="Validate YOLOv5 (v7.0-compatible) weights.")
    add_model_options(
        p, "runs/val", "model path(s): .pt (several = an ensemble), .torchscript, .onnx, *_openvino_model"
    )
    p.add_argument("--data", default=None, help="dataset yaml (default: the built-in synthetic dataset)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="inference size (pixels)")
    p.add_argument("--conf-thres", type=float, default=0.001, help="confidence threshold")
    p.add_argument("--iou-thres", type=float, default=0.6, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=300, help="maximum detections per image")
    p.add_argument(
        "--task",
        default="val",
        choices=["train", "val", "test", "speed", "study"],
        help="train, val, test, speed or study",
    )
    p.add_argument("--workers", type=int, default=8, help="max dataloader workers")
    p.add_argument("--single-cls", action="store_true", help="treat as single-class dataset")
    p.add_argument("--augment", action="store_true", help="augmented inference")
    p.add_argument("--verbose", action="store_true", help="report mAP by class")
    p.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    p.add_argument("--save-hybrid", action="store_true", help="save label+prediction hybrid results to *.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--save-json", action="store_true", help="save a COCO-JSON results file (scored if annotated)")
    p.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference")
    p.add_argument(
        "--prune",
        type=float,
        default=None,
        metavar="AMOUNT",
        help="prune this fraction of each conv layer's weights (L1, as upstream's prune) first",
    )
    add_console_options(p, verbose=False)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        opt = build_parser().parse_args(argv)
        start_logging({"quiet": opt.quiet})  # --verbose is upstream val.py's: mAP by class
        _check(opt)
        check_project(opt.project, opt.name)  # before any model loads: a folder that cannot hold the run
        from yolo_ray.data.config import load_data_config
        from yolo_ray.cluster.session import select_device

        device = select_device(opt.device)
        data = load_data_config(opt.data if opt.data else _builtin_data())
        opt.save_json |= str(opt.data or "").endswith("coco.yaml")
        if opt.task in ("speed", "study"):  # each model on its own, fp16 where CUDA runs it, as upstream
            opt.half = device.type == "cuda"
            for weights in opt.weights:
                _validate(opt, [weights], data, device)
        else:
            _validate(opt, opt.weights, data, device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _validate(opt: argparse.Namespace, weights: list[str], data: dict, device) -> None:
    from yolo_ray.infer.backends import load_backend
    from yolo_ray.evaluation.val import check_model_data
    from yolo_ray.models import prune
    from yolo_ray.training.model_setup import check_img_size

    model = load_backend(weights, device, half=opt.half, dnn=opt.dnn)
    name = Path(weights[0]).name
    check_model_data(model, data, opt.task, opt.single_cls, name)
    if (opt.augment or opt.prune) and not model.pt:
        raise UserError("--augment and --prune need PyTorch (.pt) weights")
    if opt.prune:
        prune(model, opt.prune)
    imgsz = check_img_size(opt.imgsz, model.stride)
    _check_fixed_shape(model, imgsz)
    with new_run_dir(opt.project, opt.name, opt.exist_ok) as save_dir:
        _validate_into(save_dir, opt, model, data, imgsz, name)


def _validate_into(save_dir: Path, opt: argparse.Namespace, model, data: dict, imgsz: int, name: str) -> None:
    from yolo_ray.evaluation.val import run

    speed = opt.task == "speed"  # upstream's speed benchmark: detection thresholds, no files

    def validate(size: int, plots: bool = not speed and opt.task != "study"):
        ev = run(
            model,
            data,
            save_dir,
            task=opt.task,
            imgsz=size,
            batch_size=opt.batch_size,
            conf_thres=0.25 if speed else opt.conf_thres,
            iou_thres=0.45 if speed else opt.iou_thres,
            max_det=opt.max_det,
            single_cls=opt.single_cls,
            half=model.fp16,
            verbose=opt.verbose,
            save_txt=opt.save_txt,
            save_conf=opt.save_conf,
            save_json=opt.save_json and not speed,
            plots=plots,
            workers=opt.workers,
            weights_name=name,
            augment=opt.augment,
            save_hybrid=opt.save_hybrid,
        )
        return ev.results, tuple(t / max(ev.seen, 1) * 1e3 for t in ev.times)

    if opt.task != "study":
        validate(imgsz)
        return
    from yolo_ray.infer.study import plot_study, save_study, study_rows

    data_name = Path(opt.data).stem if opt.data else "builtin"
    save_study(study_rows(validate), save_dir / f"study_{data_name}_{Path(name).stem}.txt")
    plot_study(save_dir)


def _check(opt: argparse.Namespace) -> None:
    check_fraction("--conf-thres", opt.conf_thres)
    check_fraction("--iou-thres", opt.iou_thres)
    if opt.prune is not None:
        check_fraction("--prune", opt.prune, upper_open=True)
    check_minimums(1, imgsz=opt.imgsz, batch_size=opt.batch_size, max_det=opt.max_det)
    check_minimums(0, workers=opt.workers)
    if opt.task in ("train", "val", "test") and opt.conf_thres > 0.001:
        print(f"WARNING: --conf-thres {opt.conf_thres} > 0.001 gives invalid results (mAP needs low confidences)")
    if opt.save_hybrid:
        print("WARNING: --save-hybrid will return high mAP from hybrid labels, not from predictions alone")


def _check_fixed_shape(model, imgsz: int) -> None:
    if model.input_shape and tuple(model.input_shape[2:]) != (imgsz, imgsz):
        raise UserError(
            f"--imgsz {imgsz}: the model was exported for {model.input_shape[2]}x"
            f"{model.input_shape[3]} (pass that size, or export with --dynamic)"
        )


def _builtin_data() -> Path:
    from yolo_ray.data.synthetic import default_data_yaml

    return default_data_yaml()
