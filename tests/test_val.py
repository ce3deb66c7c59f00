"""scripts/val.py and end-of-training validation on a real (short) training run: same numbers as training,
ensembles, plots, txt/json outputs with COCO scoring, pruning, bad inputs."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from infer_helpers import IMGSZ, TRAIN_BATCH, last_results_row, load_script, trained_run
from yolo_ray.config import UserError
from yolo_ray.models.loading import load_models
from yolo_ray.models import build_model, prune

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
PLOTS = (
    "confusion_matrix.png",
    "PR_curve.png",
    "F1_curve.png",
    "P_curve.png",
    "R_curve.png",
    "val_batch0_labels.jpg",
    "val_batch0_pred.jpg",
)
ALL_ROW = re.compile(r"^\s+all\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$", re.M)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def val_cli():
    return load_script("val")


def val_args(run, project, *extra):
    return [
        "--weights",
        *extra,
        "--data",
        str(run.data),
        "--imgsz",
        str(IMGSZ),
        "--batch-size",
        str(2 * TRAIN_BATCH),
        "--workers",
        "0",
        "--project",
        str(project),
    ]


def all_row(text: str) -> tuple[float, ...]:
    rows = ALL_ROW.findall(text)
    assert rows, text
    return tuple(float(x) for x in rows[-1])


@pytest.mark.timeout(300)
def test_training_ends_validating_best_fused_with_plots_and_class_table(run):
    assert f"Validating {run.save_dir / 'weights' / 'best.pt'}" in run.log
    table = run.log.split("Validating")[-1]
    assert "Class     Images  Instances          P          R      mAP50   mAP50-95" in table
    for name in ("circle", "square", "triangle", "cross"):
        assert re.search(rf"^\s+{name}\s+16\s+\d+", table, re.M), table  # per-class rows, as upstream's verbose
    for name in PLOTS:
        assert (run.save_dir / name).stat().st_size > 1000, name


@pytest.mark.timeout(300)
def test_val_reproduces_the_last_results_row(run, val_cli, tmp_path, capsys):
    assert val_cli.main(val_args(run, tmp_path, str(run.last))) == 0
    out = capsys.readouterr().out
    images, instances, p, r, map50, map5095 = all_row(out)
    assert images == 16 and instances > 16
    expected = last_results_row(run.save_dir)
    assert map50 > 0  # a real comparison, not of zeros
    # last.pt stores the EMA in fp16 and val.py fuses BatchNorm: equal up to that rounding (3 printed digits)
    for got, key in (
        (p, "metrics/precision"),
        (r, "metrics/recall"),
        (map50, "metrics/mAP_0.5"),
        (map5095, "metrics/mAP_0.5:0.95"),
    ):
        assert got == pytest.approx(expected[key], rel=0.02, abs=2e-4), key
    assert re.search(
        r"Speed: [\d.]+ms pre-process, [\d.]+ms inference, [\d.]+ms NMS per image at shape "
        rf"\(16, 3, {IMGSZ}, {IMGSZ}\)",
        out,
    )
    for name in PLOTS:
        assert (tmp_path / "exp" / name).is_file(), name


@pytest.mark.timeout(300)
def test_ensemble_of_two_checkpoints_differs_and_is_valid(run, val_cli, tmp_path, capsys):
    assert val_cli.main(val_args(run, tmp_path, str(run.last))) == 0
    single = all_row(capsys.readouterr().out)
    assert val_cli.main(val_args(run, tmp_path, str(run.early), str(run.last))) == 0
    out = capsys.readouterr().out
    assert f"Ensemble created with ['{run.early}', '{run.last}']" in out
    ensemble = all_row(out)
    assert ensemble[:2] == single[:2] and ensemble[2:] != single[2:]
    assert all(0 <= x <= 1 for x in ensemble[2:])


@pytest.mark.timeout(300)
def test_save_txt_conf_and_json_scored_by_coco_evaluator(run, val_cli, tmp_path, capsys):
    pytest.importorskip("pycocotools", reason="the COCO evaluator is the optional 'coco' extra")
    data_dir = tmp_path / "data"
    shutil.copytree(run.data.parent, data_dir)
    _write_coco_annotations(data_dir)
    args = val_args(run, tmp_path / "runs", str(run.last), "--save-txt", "--save-conf", "--save-json")
    args[args.index("--data") + 1] = str(data_dir / "data.yaml")
    assert val_cli.main(args) == 0
    out = capsys.readouterr().out
    save_dir = tmp_path / "runs" / "exp"
    labels = sorted((save_dir / "labels").glob("*.txt"))
    assert len(labels) == 16 and "16 labels saved to" in out
    rows = [list(map(float, line.split())) for line in labels[0].read_text().splitlines()]
    assert rows and all(len(r) == 6 and 0 <= r[5] <= 1 and 0 <= r[1] <= 1 for r in rows)  # cls xywhn conf
    records = json.loads((save_dir / "last_predictions.json").read_text())
    assert {"image_id", "category_id", "bbox", "score"} == set(records[0])
    assert len(records) == sum(len(f.read_text().splitlines()) for f in labels)
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in out


def _write_coco_annotations(data_dir):
    """instances_val2017.json from the YOLO labels, so the COCO evaluator has ground truth."""
    images, annotations = [], []
    for image in sorted((data_dir / "images" / "val").glob("*.jpg")):
        images.append({"id": image.stem, "width": IMGSZ, "height": IMGSZ, "file_name": image.name})
        for line in (data_dir / "labels" / "val" / f"{image.stem}.txt").read_text().splitlines():
            c, x, y, w, h = map(float, line.split())
            box = [(x - w / 2) * IMGSZ, (y - h / 2) * IMGSZ, w * IMGSZ, h * IMGSZ]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image.stem,
                    "category_id": int(c),
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    (data_dir / "annotations").mkdir()
    (data_dir / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": i} for i in range(4)]})
    )


@pytest.mark.timeout(300)
def test_augment_and_hybrid_change_the_numbers_as_upstream(run, val_cli, tmp_path, capsys):
    assert val_cli.main(val_args(run, tmp_path, str(run.last))) == 0
    plain = all_row(capsys.readouterr().out)
    assert val_cli.main(val_args(run, tmp_path, str(run.last), "--augment")) == 0
    augmented = all_row(capsys.readouterr().out)
    assert augmented[:2] == plain[:2] and augmented[2:] != plain[2:]  # three passes merged: other boxes
    assert all(0 <= x <= 1 for x in augmented[2:])

    assert val_cli.main(val_args(run, tmp_path, str(run.last), "--save-hybrid")) == 0
    out = capsys.readouterr().out
    assert "WARNING: --save-hybrid will return high mAP" in out
    hybrid = all_row(out)
    assert hybrid[4] > 0.9 > plain[4]  # the labels themselves join the predictions
    labels = list((tmp_path / "exp3" / "labels").glob("*.txt"))  # --save-hybrid implies --save-txt
    assert len(labels) == 16


@pytest.mark.timeout(120)
def test_half_runs_fp16_on_cpu_as_upstream(run):
    from yolo_ray.infer.backends import load_backend

    x = (
        torch.from_numpy(
            np.ascontiguousarray(__import__("cv2").imread(str(run.val_images[0]))[..., ::-1].transpose(2, 0, 1))
        ).float()[None]
        / 255
    )
    full, half = load_backend(run.last), load_backend(run.last, half=True)
    assert half.fp16 and next(half.parameters()).dtype == torch.float16
    got, expected = half(x), full(x)
    assert got.dtype == torch.float16
    assert torch.allclose(got.float()[..., :4], expected[..., :4], atol=0.5)  # pixels
    assert torch.allclose(got.float()[..., 4:], expected[..., 4:], atol=0.02)  # scores


@pytest.mark.timeout(300)
def test_task_study_writes_one_row_per_size_and_a_plot(run, val_cli, tmp_path, capsys, monkeypatch):
    from yolo_ray.infer import study

    monkeypatch.setattr(study, "STUDY_SIZES", (64, 96))
    assert val_cli.main(val_args(run, tmp_path, str(run.last), "--task", "study")) == 0
    out = capsys.readouterr().out
    assert "Running --imgsz 64..." in out and "Running --imgsz 96..." in out
    rows = np.loadtxt(tmp_path / "exp" / "study_data_last.txt", ndmin=2)
    assert rows.shape == (2, 10)  # P, R, mAP50, mAP50-95, 3 losses, 3 times (ms per image) at each size
    assert rows[1, 2] > 0 and rows[1, 2] != rows[0, 2] and (rows[:, 7:] > 0).all()
    assert (tmp_path / "exp" / "study.png").stat().st_size > 1000


@pytest.mark.timeout(300)
def test_val_prune_reports_sparsity_and_map_after(run, val_cli, tmp_path, capsys):
    assert val_cli.main(val_args(run, tmp_path, str(run.last), "--prune", "0.3")) == 0
    out = capsys.readouterr().out
    sparsity = float(re.search(r"Model pruned to ([\d.]+) global sparsity", out).group(1))
    assert sparsity >= 0.29
    assert all(0 <= x <= 1 for x in all_row(out)[2:])


@pytest.mark.timeout(60)
def test_prune_zeroes_each_conv_layers_smallest_weights_as_upstream():
    model = build_model("yolov5n", nc=4)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    before = [m.weight.detach().clone() for m in convs]
    reached = prune(model, 0.3)
    for conv, weight in zip(convs, before):
        k = round(0.3 * weight.numel())  # torch's l1_unstructured prunes round(amount * n) per layer
        zeroed = conv.weight == 0
        assert int(zeroed.sum()) == k
        if k:  # the zeros are that layer's k smallest magnitudes, not a global ranking's
            assert weight.abs()[zeroed].max() <= weight.abs()[~zeroed].min()
    assert not any(hasattr(m, "weight_mask") for m in convs)  # masks removed: plain weights
    total = sum(p.numel() for p in model.parameters())
    assert reached == pytest.approx(sum(int((p == 0).sum()) for p in model.parameters()) / total)
    with pytest.raises(UserError):
        prune(model, 1.0)


@pytest.mark.timeout(120)
def test_ensemble_of_different_classes_is_refused(run, tmp_path):
    other = build_model("yolov5n", nc=2)
    path = tmp_path / "two.pt"
    torch.save(
        {
            "model": {k: v.half() if v.is_floating_point() else v for k, v in other.state_dict().items()},
            "yaml": other.yaml,
            "names": {0: "a", 1: "b"},
        },
        path,
    )
    with pytest.raises(UserError, match="same classes"):
        load_models([run.last, path])


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--weights", "{tmp}/missing.pt"], "missing.pt: weights file not found"),
        (["--weights", "{last}", "--conf-thres", "2"], "--conf-thres must be in [0, 1]"),
        (["--weights", "{last}", "--data", "{tmp}/nope.yaml"], "nope.yaml: file not found"),
        (["--weights", "{last}", "--task", "bench"], "invalid choice: 'bench'"),
        (["--weights", "{last}", "--data", "{two_class}"], "has 4 classes but --data"),
        (["--weights", "{tmp}/model.engine"], "TensorRT models are not supported here"),
        (["--weights", "{last}", "--prune", "1.5"], "--prune must be in [0, 1)"),
    ],
)
def test_bad_inputs_print_one_error_line_and_exit_2(run, val_cli, tmp_path, capsys, args, expected):
    two_class = tmp_path / "two.yaml"
    two_class.write_text(f"path: {run.data.parent}\ntrain: images/train\nval: images/val\nnc: 2\nnames: [a, b]\n")
    (tmp_path / "model.engine").write_bytes(b"x")
    args = [a.format(tmp=tmp_path, last=run.last, two_class=two_class) for a in args]
    args += ["--project", str(tmp_path / "runs")]
    assert val_cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert not (tmp_path / "runs").exists()
