"""Unit tests of the training loop's parts: optimizer groups, LR schedule, warmup, EMA, early stopping,
AutoAnchor, checkpoints, results.csv, validation wiring and the worker context."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from yolo_ray.config import DEFAULT_HYP, UserError, load_hyp
from yolo_ray.scores import RESULTS_CSV_KEYS
from yolo_ray.training.autoanchor import best_possible_recall, check_anchors, kmeans
from yolo_ray.training.checkpoint import (
    append_results_row,
    build_checkpoint,
    load_training_checkpoint,
    plain_options,
    results_header,
    save_checkpoint,
    strip_optimizer,
    truncate_results,
)
from yolo_ray.training.optim import (
    EarlyStopping,
    ModelEMA,
    accumulation_steps,
    apply_warmup,
    build_optimizer,
    lr_lambda,
    scaled_weight_decay,
    warmup_iterations,
)
from yolo_ray.cluster.session import select_device, worker_context
from yolo_ray.training.validate import validate

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net() -> nn.Sequential:
    # conv without bias, BN, conv with bias: 2 biases (BN, conv2), 2 decayed weights, 1 BN weight
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_optimizer_has_three_groups_in_v7_order(name):
    net = tiny_net()
    opt = build_optimizer(net, name, lr=0.01, momentum=0.9, decay=5e-4)
    groups = opt.param_groups
    assert [len(g["params"]) for g in groups] == [2, 2, 1]  # biases, decayed weights, BN weights
    assert [g["weight_decay"] for g in groups] == [0.0, 5e-4, 0.0]
    assert groups[0]["params"][0] is net[1].bias and groups[0]["params"][1] is net[2].bias
    assert groups[2]["params"][0] is net[1].weight
    if name == "SGD":
        assert groups[0]["nesterov"] and groups[0]["momentum"] == 0.9
    else:
        assert groups[0]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError):
        build_optimizer(net, "RMSprop", 0.01, 0.9, 5e-4)


@pytest.mark.timeout(10)
def test_nominal_batch_accumulation_and_weight_decay():
    assert [accumulation_steps(b) for b in (1, 16, 24, 64, 128)] == [64, 4, 3, 1, 1]
    assert scaled_weight_decay(5e-4, 16) == pytest.approx(5e-4)  # 16 * 4 = 64 images per step
    assert scaled_weight_decay(5e-4, 24) == pytest.approx(5e-4 * 72 / 64)
    assert scaled_weight_decay(5e-4, 128) == pytest.approx(1e-3)


@pytest.mark.timeout(10)
def test_lr_schedules():
    linear = lr_lambda(10, 0.01, cos_lr=False)
    assert linear(0) == 1.0 and linear(10) == pytest.approx(0.01)
    assert linear(4) == pytest.approx((1 - 0.4) * 0.99 + 0.01)
    cosine = lr_lambda(10, 0.1, cos_lr=True)
    assert cosine(0) == pytest.approx(1.0) and cosine(10) == pytest.approx(0.1)
    assert cosine(5) == pytest.approx(0.55)
    assert cosine(2) == pytest.approx(1 - (1 - math.cos(0.2 * math.pi)) / 2 * 0.9)


@pytest.mark.timeout(10)
def test_warmup_interpolates_lr_momentum_and_accumulation():
    hyp = load_hyp(DEFAULT_HYP)  # warmup_bias_lr 0.1, warmup_momentum 0.8, momentum 0.937, lr0 0.01
    net = tiny_net()
    opt = build_optimizer(net, "SGD", hyp["lr0"], hyp["momentum"], 5e-4)
    lf = lr_lambda(10, hyp["lrf"], cos_lr=False)
    torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lf)  # sets initial_lr as in training
    nw = warmup_iterations(hyp["warmup_epochs"], 50)
    assert nw == 150 and warmup_iterations(3.0, 10) == 100

    assert apply_warmup(opt, 0, nw, lf(0), hyp, batch_size=16) == 1
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.0, 0.0])
    assert opt.param_groups[1]["momentum"] == pytest.approx(0.8)

    acc = apply_warmup(opt, 75, nw, lf(1), hyp, batch_size=16)
    assert acc == round(np.interp(75, [0, 150], [1, 4]))  # 2.5 rounds to 2 (banker's rounding, as numpy)
    target = 0.01 * lf(1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([(0.1 + target) / 2, target / 2, target / 2])
    assert opt.param_groups[2]["momentum"] == pytest.approx((0.8 + 0.937) / 2)

    assert apply_warmup(opt, 150, nw, lf(2), hyp, batch_size=16) == 4
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01 * lf(2)] * 3)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.937)


@pytest.mark.timeout(10)
def test_ema_follows_the_decay_formula():
    torch.manual_seed(0)
    net = tiny_net()
    ema = ModelEMA(net)
    before = {k: v.clone() for k, v in ema.ema.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net[1].running_mean.fill_(2.0)
    net[1].num_batches_tracked += 7
    ema.update(net)
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    after = ema.ema.state_dict()
    for k, v in net.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(after[k], d * before[k] + (1 - d) * v, atol=1e-6), k
    assert after["1.num_batches_tracked"] == 0  # integer buffers are not averaged
    assert ema.updates == 1
    assert not any(p.requires_grad for p in ema.ema.parameters())

    other = ModelEMA(tiny_net())
    other.load_state({k: v.half() if v.is_floating_point() else v for k, v in after.items()}, updates=1)
    assert other.updates == 1
    assert torch.allclose(other.ema[0].weight, after["0.weight"], atol=1e-2)

    other.ema.half().float()  # as validation on CUDA does: the EMA must keep averaging the live tensors
    previous = other.ema[2].bias.clone()
    other.update(net)
    assert not torch.equal(other.ema[2].bias, previous)


@pytest.mark.timeout(10)
def test_early_stopping_counts_epochs_without_improvement():
    stopper = EarlyStopping(patience=3)
    fitnesses = [0.1, 0.3, 0.2, 0.25, 0.29, 0.1]
    stops = [stopper(epoch=e, fitness=f) for e, f in enumerate(fitnesses)]
    assert stops == [False, False, False, False, True, True]
    assert stopper.best_epoch == 1
    never = EarlyStopping(patience=0)
    assert not any(never(epoch=e, fitness=1.0 / (e + 1)) for e in range(50))


@pytest.mark.timeout(10)
def test_best_possible_recall_by_hand():
    wh = torch.tensor([[10.0, 10.0], [50.0, 10.0], [30.0, 30.0]])
    anchors = torch.tensor([[10.0, 10.0]])
    # box 1 matches exactly; box 2 has w ratio 5 > 4; box 3 has ratio 3 < 4 in both
    bpr, aat = best_possible_recall(anchors, wh, thr=4.0)
    assert bpr == pytest.approx(2 / 3) and aat == pytest.approx(2 / 3)
    bpr, aat = best_possible_recall(torch.tensor([[10.0, 10.0], [40.0, 10.0]]), wh, thr=4.0)
    # box 1 vs 40x10: ratio 1/4 is not > 1/4; box 2 fits 40x10 only; box 3 fits both (worst ratios 1/3)
    assert bpr == pytest.approx(1.0) and aat == pytest.approx(4 / 3)


@pytest.mark.timeout(20)
def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 1.0], [10.0, 1.0], [5.0, 9.0]])
    data = np.concatenate([c + rng.normal(0, 0.1, (50, 2)) for c in centres])
    found = kmeans(data, 3, rng)
    found = found[np.argsort(found[:, 0] + 100 * found[:, 1])]
    assert np.allclose(found, centres[np.argsort(centres[:, 0] + 100 * centres[:, 1])], atol=0.1)


class FakeDetect(nn.Module):
    def __init__(self, anchors_px: list, strides: list):
        super().__init__()
        self.stride = torch.tensor(strides, dtype=torch.float32)
        a = torch.tensor(anchors_px, dtype=torch.float32).view(len(strides), -1, 2)
        self.register_buffer("anchors", a / self.stride.view(-1, 1, 1))


@pytest.mark.timeout(60)
def test_check_anchors_refits_poor_anchors_and_keeps_good_ones():
    rng = np.random.default_rng(0)
    shapes = np.full((40, 2), 640.0)
    # boxes of 3 sizes in normalised units: 24, 96 and 384 px at imgsz 640 (with some spread)
    sizes = np.array([24, 96, 384]) / 640
    labels = []
    for _ in range(40):
        s = rng.choice(sizes, 6)[:, None] * rng.uniform(0.8, 1.25, (6, 2))
        labels.append(np.concatenate([np.zeros((6, 1)), np.full((6, 2), 0.5), s], 1).astype(np.float32))
    tiny = [[2, 2], [3, 3], [4, 4], [2, 3], [3, 2], [4, 3], [3, 4], [2, 4], [4, 2]]  # all far too small
    detect = FakeDetect(tiny, [8, 16, 32])
    assert check_anchors(detect, shapes, labels, thr=4.0, imgsz=640, rng=np.random.default_rng(1))
    px = detect.anchors * detect.stride.view(-1, 1, 1)
    area = px.prod(-1).mean(-1)
    assert area[0] < area[1] < area[2]  # ordered small to large with the stride
    wh = torch.tensor(np.concatenate([lb[:, 3:5] * 640 for lb in labels]))
    assert best_possible_recall(px.view(-1, 2), wh, 4.0)[0] > 0.98

    good = px.clone()
    assert not check_anchors(detect, shapes, labels, thr=4.0, imgsz=640, rng=np.random.default_rng(2))
    assert torch.equal(detect.anchors * detect.stride.view(-1, 1, 1), good)


@pytest.mark.timeout(10)
def test_checkpoint_round_trip(tmp_path):
    net = tiny_net()
    net.yaml = {"nc": 2, "backbone": []}
    net.names = {0: "a", 1: "b"}
    opt = build_optimizer(net, "SGD", 0.01, 0.9, 5e-4)
    net(torch.rand(1, 3, 8, 8)).sum().backward()
    opt.step()
    ema = ModelEMA(net)
    options = {"epochs": 3, "freeze": (0,), "hyp": {"lr0": 0.01}, "decoded": object(), "save_dir": "/x"}
    ckpt = build_checkpoint(2, 0.5, net, ema.ema, 7, opt, options)
    path = tmp_path / "last.pt"
    save_checkpoint(ckpt, path)
    assert not (tmp_path / "last.pt.tmp").exists()

    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 2 and loaded["best_fitness"] == 0.5 and loaded["updates"] == 7
    assert loaded["opt"] == {"epochs": 3, "freeze": [0], "hyp": {"lr0": 0.01}, "save_dir": "/x"}
    assert loaded["yaml"] == net.yaml and loaded["names"] == net.names
    assert loaded["model"]["0.weight"].dtype == torch.float16
    assert loaded["model"]["1.num_batches_tracked"].dtype == torch.int64
    assert torch.allclose(loaded["model"]["2.bias"].float(), net[2].bias, atol=1e-3)
    fresh = tiny_net()
    fresh_opt = build_optimizer(fresh, "SGD", 0.01, 0.9, 5e-4)
    fresh_opt.load_state_dict(load_training_checkpoint(path)["optimizer"])
    momentum = [o.state_dict()["state"][0]["momentum_buffer"] for o in (fresh_opt, opt)]
    assert torch.equal(*momentum)

    strip_optimizer(path)
    stripped = torch.load(path, weights_only=True)
    assert stripped["epoch"] == -1 and stripped["optimizer"] is None and stripped["ema"] is None
    assert all(torch.equal(stripped["model"][k], loaded["ema"][k]) for k in loaded["ema"])


@pytest.mark.timeout(10)
def test_plain_options_drops_objects():
    assert plain_options({"a": 1, "b": [1, 2.5], "c": {"d": None}, "e": np.float32(1), "f": object()}) == {
        "a": 1,
        "b": [1, 2.5],
        "c": {"d": None},
    }


@pytest.mark.timeout(10)
def test_results_csv_matches_upstream_format_and_truncates(tmp_path):
    csv = tmp_path / "results.csv"
    assert results_header().split(",")[0] == " " * 15 + "epoch"
    assert [h.strip() for h in results_header().split(",")] == list(RESULTS_CSV_KEYS)
    assert all(len(h) == 20 for h in results_header().split(","))
    for epoch in range(3):
        append_results_row(csv, epoch, [0.123456789] * 3 + [0.5] * 7 + [1e-5, 0.00333, 0.1])
    lines = csv.read_text().splitlines()
    assert lines[0] == results_header() and len(lines) == 4
    fields = lines[2].split(",")
    assert fields[0] == " " * 19 + "1" and fields[1] == " " * 13 + "0.12346" and fields[11] == " " * 15 + "1e-05"
    with open(csv, "a") as f:
        f.write("                   3,     0.1")  # torn line of a killed run
    truncate_results(csv, last_epoch=1)
    assert csv.read_text().splitlines() == lines[:3]
    with pytest.raises(ValueError):
        append_results_row(csv, 2, [0.0] * 5)


class TableModel(nn.Module):
    """Eval-mode stand-in for a DetectionModel: returns fixed decoded predictions per batch."""

    def __init__(self, preds: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.preds = preds

    def forward(self, x):
        return self.preds[: x.shape[0]].clone(), []


def letterboxed_batch():
    # two 100x200 (h x w) originals letterboxed to 64x64: ratio 0.32, pad h (64 - 32) / 2 = 16
    imgs = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    # normalised labels in the 64x64 letterboxed image: image 0 has 2 boxes, image 1 has 1
    targets = torch.tensor(
        [
            [0, 0, 0.25, 0.5, 0.125, 0.125],
            [0, 1, 0.75, 0.5, 0.25, 0.125],
            [1, 0, 0.5, 0.5, 0.25, 0.25],
        ]
    )
    shapes = [((100, 200), ((0.32, 0.32), (0.0, 16.0)))] * 2
    return imgs, targets, ("a.jpg", "b.jpg"), shapes


def perfect_predictions(targets: torch.Tensor, drop: tuple[int, ...] = ()) -> torch.Tensor:
    preds = torch.zeros(2, 4, 5 + 2)  # (bs, anchors, xywh obj c0 c1); unused rows have obj 0
    slots = [0, 0]
    for row_i, (img, cls, x, y, w, h) in enumerate(targets.tolist()):
        if row_i in drop:
            continue
        j = slots[int(img)]
        slots[int(img)] += 1
        preds[int(img), j, :4] = torch.tensor([x, y, w, h]) * 64
        preds[int(img), j, 4] = 0.9
        preds[int(img), j, 5 + int(cls)] = 1.0
    return preds


@pytest.mark.timeout(30)
def test_validate_scores_perfect_and_partial_predictions():
    batch = letterboxed_batch()
    model = TableModel(perfect_predictions(batch[1]))
    (p, r, map50, map5095, *losses), maps = validate(model, [batch], nc=3)
    assert (p, r, map50) == pytest.approx((1.0, 1.0, 0.995), abs=1e-3)  # 101-point interpolated AP tops at 0.995
    assert map5095 == pytest.approx(0.995, abs=1e-3)
    assert losses == [0.0, 0.0, 0.0]
    assert maps == pytest.approx([0.995, 0.995, 0.995], abs=1e-3)  # class 2 is absent: it gets the mean

    missed_one = TableModel(perfect_predictions(batch[1], drop=(0,)))
    (p, r, map50, *_), maps = validate(missed_one, [batch], nc=3)
    assert (p, r) == pytest.approx((1.0, 0.75), abs=1e-3)  # class 0 recall 1/2, class 1 recall 1
    # class 0: precision 1 up to recall 0.5, then upstream's sentinel (recall 1, precision 0) adds a
    # triangle: 0.5 + 0.25 = 0.75
    assert maps[0] == pytest.approx(0.75, abs=1e-3) and maps[1] == pytest.approx(0.995, abs=1e-3)
    assert map50 == pytest.approx((0.75 + 0.995) / 2, abs=1e-3)


@pytest.mark.timeout(10)
def test_worker_context_and_device_selection():
    ctx = worker_context("cpu")
    assert (ctx.rank, ctx.world_size, ctx.mode, ctx.device.type) == (0, 1, "plain", "cpu")
    assert not ctx.distributed and ctx.is_main
    assert select_device("cpu").type == "cpu"
    with pytest.raises(UserError):
        select_device("gpu")
    if not torch.cuda.is_available():
        assert select_device("").type == "cpu"
        with pytest.raises(UserError, match="not available"):
            select_device("0")
