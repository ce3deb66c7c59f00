"""Run a trained YOLOv5 model on images, videos and streams: annotated copies, YOLO txt labels, crops.

python scripts/detect.py --weights runs/train/exp/weights/best.pt --source images/       # a folder
python scripts/detect.py --weights best.pt --source 'frames/*.jpg' --save-txt --save-conf
python scripts/detect.py --weights best.pt --source clip.mp4 --conf-thres 0.4
python scripts/detect.py --weights a.pt b.pt --source list.txt --save-crop                # ensemble
python scripts/detect.py --weights best.onnx --source 0                                    # webcam
python scripts/detect.py --weights best.pt --source rtsp://host/stream --imgsz 480 640     # stream
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
    p = OneLineParser(description="Detect objects with YOLOv5 (v7.0-compatible) weights.")
    add_model_options(
        p, "runs/detect", "model path(s): .pt (several = an ensemble), .torchscript, .onnx, *_openvino_model"
    )
    p.add_argument(
        "--source",
        required=True,
        help="image, video, folder, glob ('dir/*.jpg'), .txt list of paths, "
        "URL, webcam index (0), stream URL or .streams file",
    )
    p.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640], help="inference size h,w")
    p.add_argument("--conf-thres", type=float, default=0.25, help="confidence threshold")
    p.add_argument("--iou-thres", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=1000, help="maximum detections per image")
    p.add_argument("--view-img", action="store_true", help="show results")
    p.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    p.add_argument("--nosave", action="store_true", help="do not save images/videos")
    p.add_argument("--classes", nargs="+", type=int, help="filter by class: --classes 0, or --classes 0 2 3")
    p.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    p.add_argument("--augment", action="store_true", help="augmented inference")
    p.add_argument("--visualize", action="store_true", help="visualize features")
    p.add_argument("--line-thickness", type=int, default=3, help="bounding box thickness (pixels)")
    p.add_argument("--hide-labels", action="store_true", help="hide labels")
    p.add_argument("--hide-conf", action="store_true", help="hide confidences")
    p.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference")
    p.add_argument("--vid-stride", type=int, default=1, help="video frame-rate stride")
    add_console_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        opt = build_parser().parse_args(argv)
        start_logging({"quiet": opt.quiet, "verbose": opt.verbose})
        imgsz = _check(opt)
        check_project(opt.project, opt.name)  # before any model loads: a folder that cannot hold the run
        from yolo_ray.infer.backends import load_backend
        from yolo_ray.infer.detect import DetectOptions, run, single_frames
        from yolo_ray.infer.sources import VID_FORMATS, Skipped, is_stream_source, list_sources
        from yolo_ray.infer.streams import Streams
        from yolo_ray.training.model_setup import check_img_size
        from yolo_ray.cluster.session import select_device

        stream = is_stream_source(opt.source)
        files = None if stream else list_sources(opt.source)
        device = select_device(opt.device)
        model = load_backend(opt.weights, device, half=opt.half, dnn=opt.dnn)
        _check_classes(opt.classes, model.nc)
        imgsz = tuple(check_img_size(x, model.stride) for x in imgsz)
        _check_fixed_shape(model, imgsz)
        if (opt.augment or opt.visualize) and not model.pt:
            raise UserError("--augment and --visualize need PyTorch (.pt) weights")
        skipped = Skipped()
        batches = Streams(opt.source, opt.vid_stride) if stream else single_frames(files, skipped, opt.vid_stride)
        options = DetectOptions(
            imgsz=imgsz,
            conf_thres=opt.conf_thres,
            iou_thres=opt.iou_thres,
            max_det=opt.max_det,
            classes=opt.classes,
            agnostic_nms=opt.agnostic_nms,
            augment=opt.augment,
            visualize=opt.visualize,
            view_img=opt.view_img,
            save_txt=opt.save_txt,
            save_conf=opt.save_conf,
            save_crop=opt.save_crop,
            save_img=not opt.nosave and not opt.source.endswith(".txt"),
            line_thickness=opt.line_thickness,
            hide_labels=opt.hide_labels,
            hide_conf=opt.hide_conf,
            vid_stride=opt.vid_stride,
        )
        images_only = files is not None and not any(Path(f).suffix[1:].lower() in VID_FORMATS for f in files)
        with new_run_dir(opt.project, opt.name, opt.exist_ok) as save_dir:
            run(model, batches, save_dir, options, total=len(files) if images_only else None)
        if skipped.files:
            print(f"WARNING: {len(skipped.files)} of {len(files)} source files could not be read and were skipped")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _check(opt: argparse.Namespace) -> tuple[int, int]:
    """The numeric options; returns --imgsz as (h, w)."""
    check_fraction("--conf-thres", opt.conf_thres)
    check_fraction("--iou-thres", opt.iou_thres)
    if len(opt.imgsz) > 2:
        raise UserError(f"--imgsz {' '.join(map(str, opt.imgsz))}: give one size or height and width")
    check_minimums(
        1, imgsz=min(opt.imgsz), max_det=opt.max_det, line_thickness=opt.line_thickness, vid_stride=opt.vid_stride
    )
    return tuple(opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz)


def _check_fixed_shape(model, imgsz: tuple[int, int]) -> None:
    if model.input_shape and tuple(model.input_shape[2:]) != imgsz:
        raise UserError(
            f"--imgsz {imgsz[0]} {imgsz[1]}: the model was exported for {model.input_shape[2]} "
            f"{model.input_shape[3]} (pass that, or export with --dynamic)"
        )


def _check_classes(classes: list[int] | None, nc: int) -> None:
    bad = [c for c in classes or [] if not 0 <= c < nc]
    if bad:
        raise UserError(f"--classes {bad}: the model has classes 0..{nc - 1}")
