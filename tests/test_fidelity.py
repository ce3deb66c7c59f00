"""Fidelity to upstream YOLOv5 v7.0 where users see it (issue 9): each test derives its expected value
from the upstream line quoted in its docstring, and failed before the matching fix."""

from __future__ import annotations

import importlib.util
import logging
import math
import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from yolo_ray.boxes import resample_segments, segment2box
from yolo_ray.config import DEFAULT_HYP, UserError, load_hyp
from yolo_ray.data import dataset as dataset_mod
from yolo_ray.data.augment import box_candidates, mixup
from yolo_ray.data.config import load_data_config
from yolo_ray.data.dataset import LoadImagesAndLabels, decode_image
from yolo_ray.data.labels import img2label_paths, list_image_files
from yolo_ray.models import build_model, load_checkpoint
from yolo_ray.models.yolo import DetectionModel
from yolo_ray.training import loop
from yolo_ray.training.checkpoint import build_checkpoint, save_checkpoint, strip_optimizer
from yolo_ray.training.model_setup import create_model, process_seed
from yolo_ray.training.optim import ModelEMA

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def private_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("train_cli_fidelity", REPO / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_image(path: Path, h: int = 64, w: int = 64) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return str(path)


def write_label(image: str, text: str) -> None:
    label = Path(img2label_paths([image])[0])
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text(text)


# ---- 1. anchors


@pytest.mark.timeout(30)
def test_evolved_anchor_count_is_rounded_not_truncated():
    """upstream train.py: Model(cfg, ch=3, nc=nc, anchors=hyp.get('anchors')); models/yolo.py:
    `self.yaml['anchors'] = round(anchors)` — a mutated 3.6 builds 4 anchors per level."""
    anchors = 3.6
    model = create_model("yolov5n.yaml", None, None, nc=2, hyp={"anchors": anchors})
    assert model.model[-1].na == round(anchors) == 4


# ---- 2. Detect bias init


@pytest.mark.timeout(30)
def test_detect_class_bias_starts_at_upstreams_value(monkeypatch):
    """upstream models/yolo.py _initialize_biases: `b.data[:, 5:5 + m.nc] += math.log(0.6 / (m.nc - 0.99999))`
    and `b.data[:, 4] += math.log(8 / (640 / s) ** 2)` — at nc=1 the class logit starts near 11.0."""
    nc = 1
    torch.manual_seed(0)
    model = build_model("yolov5n.yaml", nc=nc)
    monkeypatch.setattr(DetectionModel, "_initialize_biases", lambda self: None)
    torch.manual_seed(0)
    raw = build_model("yolov5n.yaml", nc=nc)  # the same random conv biases, before the init
    detect, raw_detect = model.model[-1], raw.model[-1]
    for conv, raw_conv, s in zip(detect.m, raw_detect.m, detect.stride):
        shift = (conv.bias - raw_conv.bias).detach().view(detect.na, -1)
        torch.testing.assert_close(shift[:, 4], torch.full((detect.na,), math.log(8 / (640 / float(s)) ** 2)))
        torch.testing.assert_close(shift[:, 5:], torch.full((detect.na, nc), math.log(0.6 / (nc - 0.99999))))


# ---- 3. --weights from an unstripped checkpoint


@pytest.mark.timeout(30)
def test_weights_from_an_unstripped_checkpoint_start_from_model_not_ema(tmp_path):
    """upstream train.py: `csd = ckpt['model'].float().state_dict()` — the raw model, even when the
    checkpoint also holds an EMA (inference's attempt_load takes the EMA instead)."""
    model = build_model("yolov5n.yaml", nc=3)
    ema = ModelEMA(model)
    with torch.no_grad():
        for p in ema.ema.parameters():
            p.add_(0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    path = tmp_path / "last.pt"
    save_checkpoint(build_checkpoint(3, 0.2, model, ema.ema, 10, optimizer, {}), path)

    trained = create_model(None, str(path), None, nc=3, hyp={})
    key = "model.24.m.0.weight"
    torch.testing.assert_close(trained.state_dict()[key], model.state_dict()[key].half().float())
    assert not torch.equal(trained.state_dict()[key], ema.ema.state_dict()[key].half().float())
    torch.testing.assert_close(load_checkpoint(path)["state_dict"][key], ema.ema.state_dict()[key].half().float())


# ---- 4. bad label rows


@pytest.mark.timeout(60)
def test_a_bad_label_row_excludes_its_image_on_coco128(coco128, tmp_path, caplog):
    """upstream utils/dataloaders.py verify_image_label: a failed label check raises, and the except
    branch returns `[None, None, None, None, nm, nf, ne, nc, msg]` with
    msg = f'{prefix}WARNING ⚠️ {im_file}: ignoring corrupt image/label: {e}' — the image is not used."""
    source = sorted((coco128.parent / "images" / "train2017").glob("*.jpg"))[:6]
    for image in source:
        target = tmp_path / "images" / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, target)
        label = coco128.parent / "labels" / "train2017" / f"{image.stem}.txt"
        if label.is_file():
            write_label(str(target), label.read_text())
    images = list_image_files(tmp_path / "images")
    victim = images[2]
    lines = Path(img2label_paths([victim])[0]).read_text().splitlines()
    assert lines, "the chosen coco128 image should have labels"
    write_label(victim, "\n".join([*lines, "0 0.5 0.5 1.7 0.2"]) + "\n")  # one row out of range

    with caplog.at_level(logging.INFO, logger="yolo_ray.data"):
        ds = LoadImagesAndLabels(str(tmp_path / "images"), img_size=160, verbose=True)
    assert victim not in ds.im_files and len(ds.im_files) == len(images) - 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 corrupt images/labels ignored" in warnings[0]
    assert f"{victim}: ignoring corrupt image/label" in warnings[0]


# ---- 5. load_image rounding


@pytest.mark.timeout(60)
def test_load_image_truncates_the_resized_size_on_coco128(coco128):
    """upstream utils/dataloaders.py load_image: `r = self.img_size / max(h0, w0)` and
    `cv2.resize(im, (int(w0 * r), int(h0 * r)), interpolation=interp)`."""
    imgsz = 320
    paths = sorted((coco128.parent / "images" / "val2017").glob("*.jpg"))
    rounded_up = 0
    for path in paths:
        im, (h0, w0), (h, w) = decode_image(str(path), imgsz, augment=False)
        r = imgsz / max(h0, w0)
        assert (h, w) == im.shape[:2] == (int(h0 * r), int(w0 * r)), path.name
        rounded_up += (math.ceil(h0 * r), math.ceil(w0 * r)) != (h, w)
    assert rounded_up > 0  # the sizes this checks differ from ceil() on this data


# ---- 6. mixup


@pytest.mark.timeout(10)
def test_mixup_truncates_like_upstream():
    """upstream utils/augmentations.py mixup: `r = np.random.beta(32.0, 32.0)` then
    `im = (im * r + im2 * (1 - r)).astype(np.uint8)` — truncation, not rounding."""
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    np.random.seed(7)
    r = np.random.beta(32.0, 32.0)
    expected = (a * r + b * (1 - r)).astype(np.uint8)
    np.random.seed(7)
    out, labels = mixup(a, np.ones((1, 5)), b, np.zeros((2, 5)))
    np.testing.assert_array_equal(out, expected)
    assert labels.shape == (3, 5)


# ---- 7. segments in perspective warps


@pytest.mark.timeout(60)
def test_mosaic_mixing_boxes_and_polygons_warps_every_label_through_its_polygon(tmp_path, monkeypatch):
    """upstream utils/augmentations.py random_perspective: `use_segments = any(x.any() for x in segments)`;
    then per label `new[i] = segment2box(xy, width, height)` of its resampled, warped polygon, and
    `box_candidates(..., area_thr=0.01 if use_segments else 0.10)`. A box-only label's polygon is its
    4 corners, so each label keeps its own row (upstream leaves box-only images out of segments4 and
    misaligns the rows; we keep them aligned)."""
    boxes = write_image(tmp_path / "images" / "boxes.png")
    write_label(boxes, "0 0.5 0.5 0.5 0.4\n")
    polygon = write_image(tmp_path / "images" / "polygon.png")
    triangle = [0.2, 0.2, 0.8, 0.3, 0.5, 0.8]
    write_label(polygon, "1 " + " ".join(map(str, triangle)) + "\n")
    hyp = {
        **load_hyp(DEFAULT_HYP),
        "degrees": 45.0,
        "translate": 0.0,
        "scale": 0.0,
        "shear": 0.0,
        "perspective": 0.0,
        "copy_paste": 0.0,
        "mosaic": 1.0,
    }
    ds = LoadImagesAndLabels(str(tmp_path / "images"), img_size=64, augment=True, hyp=hyp, verbose=False)

    calls, matrices = [], []
    real_perspective, real_warp = dataset_mod.random_perspective, cv2.warpAffine

    def record_perspective(im, targets, segments, **kwargs):
        out = real_perspective(im, targets, segments, **kwargs)
        calls.append((targets.copy(), [s.copy() for s in segments], im.shape, out[1].copy()))
        return out

    def record_warp(im, m, **kwargs):
        matrices.append(m.copy())
        return real_warp(im, m, **kwargs)

    monkeypatch.setattr(dataset_mod, "random_perspective", record_perspective)
    monkeypatch.setattr(cv2, "warpAffine", record_warp)
    mixed = None
    for seed in range(20):
        calls.clear()
        matrices.clear()
        np.random.seed(seed)
        random.seed(seed)
        ds.load_mosaic(0)
        targets = calls[0][0]
        if {0.0, 1.0} <= set(targets[:, 0].tolist()):
            mixed = calls[0], matrices[0]
            break
    assert mixed is not None, "no mosaic mixed both images"
    (targets, segments, shape, out), m = mixed

    assert len(segments) == len(targets)  # every label warps through a polygon
    for cls, seg in zip(targets[:, 0], segments):
        assert len(seg) == (3 if cls == 1 else 4)  # the real triangle; a box's 4 corners
    width, height = shape[1] + 2 * ds.mosaic_border[1], shape[0] + 2 * ds.mosaic_border[0]
    new = np.zeros((len(targets), 4))
    for i, seg in enumerate(resample_segments(segments)):
        xy = seg @ m[:, :2].T + m[:, 2]
        new[i] = segment2box(xy, width, height)
    keep = box_candidates(targets[:, 1:5].T * 1.0, new.T, area_thr=0.01)  # scale=0: s = 1
    assert keep.any()
    np.testing.assert_allclose(out[:, 1:5], new[keep], atol=1e-3)
    np.testing.assert_array_equal(out[:, 0], targets[keep, 0])


# ---- 8. seeds


@pytest.mark.timeout(30)
def test_single_process_training_seeds_with_seed_itself(tmp_path, monkeypatch):
    """upstream train.py: `init_seeds(opt.seed + 1 + RANK, deterministic=True)` with
    RANK = int(os.getenv('RANK', -1)), i.e. -1 in a single process."""
    seeds = []

    class Seeded(Exception):
        pass

    def record(seed, deterministic=False):
        seeds.append(seed)
        raise Seeded

    monkeypatch.setattr(loop, "init_seeds", record)
    with pytest.raises(Seeded):
        loop.train_loop_per_worker({"seed": 5, "save_dir": str(tmp_path), "device": "cpu", "evolve": True})
    rank = -1
    assert seeds == [5 + 1 + rank]
    assert process_seed(5, 1, True) == 5 + 1 + 1  # DDP rank 1


# ---- 9. data yaml path


@pytest.mark.timeout(30)
def test_relative_data_path_falls_back_to_the_current_directory(tmp_path, monkeypatch):
    """upstream utils/general.py check_dataset: `path = Path(extract_dir or data.get('path') or '')`,
    `if not path.is_absolute(): path = (ROOT / path).resolve()` — relative to where YOLOv5 runs. The
    yaml's own folder is tried first, then the current directory; neither names both in the error."""
    dataset = tmp_path / "work" / "datasets" / "custom"
    write_image(dataset / "images" / "a.png")
    run_from = tmp_path / "work" / "yolov5"
    run_from.mkdir()
    data_yaml = tmp_path / "configs" / "deep" / "custom.yaml"
    data_yaml.parent.mkdir(parents=True)
    data_yaml.write_text("path: ../datasets/custom\ntrain: images\nval: images\nnames: [thing]\n")

    monkeypatch.chdir(run_from)
    assert load_data_config(data_yaml)["path"] == dataset
    monkeypatch.chdir(tmp_path)  # a Ray worker runs elsewhere: the command's directory travels along
    assert load_data_config(data_yaml, cwd=run_from)["train"] == [str(dataset / "images")]

    data_yaml.write_text("path: ../nowhere\ntrain: images\nval: images\nnames: [thing]\n")
    with pytest.raises(UserError) as info:
        load_data_config(data_yaml, cwd=run_from)
    message = str(info.value)
    assert str(tmp_path / "configs" / "nowhere") in message and str(tmp_path / "work" / "nowhere") in message


# ---- 10. resuming a finished run


def finished_run(cli, project: Path, data: Path, epochs: int, last_epoch: int) -> Path:
    """A run dir made by the CLI's own option handling, with a last.pt as training leaves it."""
    opt = cli.fresh_run_options(
        vars(
            cli.build_parser().parse_args(
                ["--cfg", "yolov5n.yaml", "--data", str(data), "--epochs", str(epochs), "--project", str(project)]
            )
        )
    )
    cli.claim_run_dir(opt)
    last = Path(opt["save_dir"]) / "weights" / "last.pt"
    last.parent.mkdir()
    model = build_model("yolov5n.yaml", nc=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    save_checkpoint(build_checkpoint(max(last_epoch, 0), 0.0, model, model, 0, optimizer, {}), last)
    if last_epoch < 0:
        strip_optimizer(last)
    return last


@pytest.mark.timeout(30)
def test_resuming_a_finished_run_says_where_its_results_are(cli, stub_data, tmp_path, capsys):
    """upstream train.py: training ends with strip_optimizer (epoch -1), so smart_resume's
    `start_epoch = ckpt['epoch'] + 1` is 0 and it stops ('training to {epochs} epochs is finished,
    nothing to resume'); a checkpoint of the last epoch not yet stripped runs no epoch
    (`range(start_epoch, epochs)` is empty) and goes to the end-of-training steps."""
    project = tmp_path / "runs"
    last = finished_run(cli, project, stub_data, epochs=3, last_epoch=-1)
    run = last.parent.parent
    capsys.readouterr()
    assert cli.main(["--resume", str(last)]) == 0
    out = capsys.readouterr().out
    assert "training to 3 epochs is finished" in out and str(run) in out
    assert sorted(p.name for p in project.iterdir()) == ["exp"]

    # --epochs above the run's own fine-tunes the finished weights in a new run, the old one untouched
    opt = cli.resume_options(str(last), str(project), epochs=5)
    assert opt["weights"] == str(last) and opt["resume"] is None and opt["epochs"] == 5 - 3
    cli.claim_run_dir(opt)
    assert opt["save_dir"] == str(project / "exp2")
    assert yaml.safe_load((run / "opt.yaml").read_text())["epochs"] == 3

    unstripped = finished_run(cli, project, stub_data, epochs=3, last_epoch=2)
    opt = cli.resume_options(str(unstripped), str(project))
    assert opt["resume"] == str(unstripped) and opt["epochs"] == 3  # the loop runs the end steps only


# ---- 11. strip_optimizer


@pytest.mark.timeout(30)
def test_stripped_checkpoint_has_no_best_fitness_and_loads_as_fresh_weights(cli, stub_data, tmp_path):
    """upstream utils/general.py strip_optimizer: `for k in 'optimizer', 'best_fitness', 'ema', 'updates':
    x[k] = None` and `x['epoch'] = -1` — finished weights, not a run to resume."""
    model = build_model("yolov5n.yaml", nc=1)
    ema = ModelEMA(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    last = finished_run(cli, tmp_path / "runs", stub_data, epochs=3, last_epoch=1)
    save_checkpoint(build_checkpoint(1, 0.5, model, ema.ema, 10, optimizer, {}), last)
    strip_optimizer(last)

    stripped = torch.load(last, weights_only=True)
    assert stripped["best_fitness"] is None and stripped["epoch"] == -1 and stripped["optimizer"] is None
    assert load_checkpoint(last)["meta"]["best_fitness"] is None
    assert cli.resume_options(str(last), str(tmp_path / "runs")) is None  # finished: nothing to resume
    fresh = create_model(None, str(last), None, nc=1, hyp={})
    key = "model.24.m.0.weight"
    torch.testing.assert_close(fresh.state_dict()[key], stripped["model"][key].float())


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.usefixtures("one_thread")
def test_finished_runs_resume_to_the_end_steps_or_fine_tune_with_more_epochs(cli, tmp_path, capsys):
    """Real runs of item 10. upstream train.py: a last.pt of the final epoch that was not stripped yet
    trains no epoch (`for epoch in range(start_epoch, epochs)` is empty) and goes on to the end of
    training (strip_optimizer, best.pt validated); raising --epochs trains on from the final weights."""
    from yolo_ray.data.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", seed=3, n_train=16, n_val=8, size=64)
    project = tmp_path / "runs"
    tiny = [
        "--cfg",
        "yolov5n.yaml",
        "--imgsz",
        "64",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--noautoanchor",
        "--noplots",
        "--data",
        str(data),
        "--project",
        str(project),
    ]
    assert cli.main([*tiny, "--epochs", "1", "--save-period", "1"]) == 0
    run = project / "exp"
    last = run / "weights" / "last.pt"
    rows = (run / "results.csv").read_text()

    assert cli.main(["--resume", str(last), "--epochs", "2"]) == 0  # one more epoch, in a new run
    tuned = project / "exp2"
    assert len((tuned / "results.csv").read_text().splitlines()) == 2  # header + its one epoch
    assert yaml.safe_load((tuned / "opt.yaml").read_text())["weights"] == str(last)
    assert (run / "results.csv").read_text() == rows

    shutil.copy(run / "weights" / "epoch0.pt", last)  # as if killed before the end-of-training steps
    capsys.readouterr()
    assert cli.main(["--resume", str(last)]) == 0
    out = capsys.readouterr().out
    assert "0 epochs completed" in out and f"Results saved to {run}" in out
    assert torch.load(last, weights_only=True)["epoch"] == -1  # stripped now
    assert (run / "results.csv").read_text() == rows
