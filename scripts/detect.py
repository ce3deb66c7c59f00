"""Run a trained YOLOv5 model on images and videos: annotated copies, YOLO txt labels, crops.

    python scripts/detect.py --weights runs/train/exp/weights/best.pt --source images/       # a folder
    python scripts/detect.py --weights best.pt --source 'frames/*.jpg' --save-txt --save-conf
    python scripts/detect.py --weights best.pt --source clip.mp4 --conf-thres 0.4
    python scripts/detect.py --weights a.pt b.pt --source list.txt --save-crop                # ensemble
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_ray.cli import OneLineParser, add_model_options, check_fraction, make_run_dir  # noqa: E402
from yolo_ray.config import UserError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description="Detect objects with YOLOv5 (v7.0-compatible) weights.")
    add_model_options(p, "runs/detect", "model.pt path(s); several = an ensemble")
    p.add_argument("--source", required=True, help="image, video, folder, glob ('dir/*.jpg') or .txt list of paths")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="inference size (pixels)")
    p.add_argument("--conf-thres", type=float, default=0.25, help="confidence threshold")
    p.add_argument("--iou-thres", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=1000, help="maximum detections per image")
    p.add_argument("--classes", nargs="+", type=int, help="filter by class: --classes 0, or --classes 0 2 3")
    p.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    p.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    p.add_argument("--nosave", action="store_true", help="do not save images/videos")
    p.add_argument("--line-thickness", type=int, default=3, help="bounding box thickness (pixels)")
    p.add_argument("--hide-labels", action="store_true", help="hide labels")
    p.add_argument("--hide-conf", action="store_true", help="hide confidences")
    p.add_argument("--vid-stride", type=int, default=1, help="video frame-rate stride")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        opt = build_parser().parse_args(argv)
        check_fraction("--conf-thres", opt.conf_thres)
        check_fraction("--iou-thres", opt.iou_thres)
        for option, value in (("--imgsz", opt.imgsz), ("--max-det", opt.max_det),
                              ("--line-thickness", opt.line_thickness), ("--vid-stride", opt.vid_stride)):
            if value < 1:
                raise UserError(f"{option} must be at least 1, got {value}")
        from yolo_ray.infer.detect import run
        from yolo_ray.infer.predictor import load_models, model_stride
        from yolo_ray.infer.sources import list_sources
        from yolo_ray.train.model_setup import check_img_size
        from yolo_ray.train.session import select_device

        files = list_sources(opt.source)
        device = select_device(opt.device)
        model = load_models(opt.weights, device)
        half = opt.half and device.type == "cuda"
        if half:
            model.half()
        _check_classes(opt.classes, model.nc)
        imgsz = check_img_size(opt.imgsz, model_stride(model))
        save_dir = make_run_dir(opt.project, opt.name, opt.exist_ok)
        run(model, files, save_dir, imgsz=imgsz, conf_thres=opt.conf_thres, iou_thres=opt.iou_thres,
            max_det=opt.max_det, classes=opt.classes, agnostic_nms=opt.agnostic_nms, save_txt=opt.save_txt,
            save_conf=opt.save_conf, save_crop_images=opt.save_crop, nosave=opt.nosave,
            line_thickness=opt.line_thickness, hide_labels=opt.hide_labels, hide_conf=opt.hide_conf, half=half,
            vid_stride=opt.vid_stride)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _check_classes(classes: list[int] | None, nc: int) -> None:
    bad = [c for c in classes or [] if not 0 <= c < nc]
    if bad:
        raise UserError(f"--classes {bad}: the model has classes 0..{nc - 1}")


if __name__ == "__main__":
    sys.exit(main())
