"""ComputeLoss and build_targets on hand-built cases whose values are derived here by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from yolo_ray.config import load_hyp
from yolo_ray.loss import ComputeLoss, FocalLoss

LOG2 = math.log(2.0)


def fake_model(anchors: list, strides: list[float], nc: int) -> SimpleNamespace:
    """An object shaped like a DetectionModel as far as the loss reads it: model[-1] is the Detect layer."""
    anchors = torch.tensor(anchors, dtype=torch.float32)
    detect = SimpleNamespace(
        nl=anchors.shape[0], na=anchors.shape[1], nc=nc, anchors=anchors, stride=torch.tensor(strides)
    )
    return SimpleNamespace(model=[detect])


def hyp(**overrides: float) -> dict[str, float]:
    h = load_hyp(None)  # scratch-low: box 0.05, obj 1.0, cls 0.5, anchor_t 4, fl_gamma 0
    h.update(overrides)
    return h


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def bce(x: float, t: float, pos_weight: float = 1.0) -> float:
    """BCE with logits: -(pw * t * log sigmoid(x) + (1 - t) * log(1 - sigmoid(x)))."""
    return pos_weight * t * softplus(-x) + (1 - t) * softplus(x)


# Three levels on a 64 px image (grids 8, 4, 2). Only level 0's anchor (2 x 2 cells = 16 px) passes the
# ratio test for a 16 px target; the other levels' anchors (20 cells) are far beyond anchor_t = 4.
THREE_LEVEL_ANCHORS = [[[2.0, 2.0]], [[20.0, 20.0]], [[20.0, 20.0]]]
STRIDES = [8.0, 16.0, 32.0]


def zero_preds(bs: int, nc: int) -> list[torch.Tensor]:
    return [torch.zeros(bs, 1, g, g, 5 + nc) for g in (8, 4, 2)]


@pytest.mark.timeout(10)
def test_zero_logits_on_a_matching_anchor_give_log2_terms():
    model = fake_model(THREE_LEVEL_ANCHORS, STRIDES, nc=2)
    compute = ComputeLoss(model, hyp(obj_pw=3.0, cls_pw=2.0))
    # image 1 of 2, class 1, centred in cell (4, 4) of the 8x8 grid, 16 px square = the anchor exactly
    targets = torch.tensor([[1.0, 1.0, 4.5 / 8, 4.5 / 8, 0.25, 0.25]])
    loss, items = compute(zero_preds(2, 2), targets)

    # Zero logits decode to xy offset 2*0.5-0.5 = 0.5 (the cell centre) and wh = (2*0.5)^2 * anchor,
    # so the box is exact: CIoU = 1 and the objectness target is 1.
    # BCE at logit 0 is (pw * t + 1 - t) * log 2: one positive among 2*64 level-0 cells with obj_pw 3.
    obj_level0 = LOG2 * (127 + 3.0) / 128
    expected_obj = 1.0 * (4.0 * obj_level0 + 1.0 * LOG2 + 0.4 * LOG2)
    # class targets [0, 1] with cls_pw 2: (1 + 2) * log 2 over 2 elements
    expected_cls = 0.5 * 1.5 * LOG2
    assert items.shape == (3,) and loss.shape == (1,)
    assert items[0].item() == pytest.approx(0.0, abs=1e-6)
    assert items[1].item() == pytest.approx(expected_obj, rel=1e-6)
    assert items[2].item() == pytest.approx(expected_cls, rel=1e-6)
    assert loss.item() == pytest.approx(2 * (expected_obj + expected_cls), rel=1e-6)  # times batch size


def ciou_xywh(b1: tuple, b2: tuple, eps: float = 1e-7) -> float:
    """CIoU of two xywh boxes, written out from the paper's definition."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = b1, b2
    ix = max(0.0, min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2))
    iy = max(0.0, min(y1 + h1 / 2, y2 + h2 / 2) - max(y1 - h1 / 2, y2 - h2 / 2))
    union = w1 * h1 + w2 * h2 - ix * iy + eps
    iou = ix * iy / union
    cw = max(x1 + w1 / 2, x2 + w2 / 2) - min(x1 - w1 / 2, x2 - w2 / 2)
    ch = max(y1 + h1 / 2, y2 + h2 / 2) - min(y1 - h1 / 2, y2 - h2 / 2)
    rho2 = (x1 - x2) ** 2 + (y1 - y2) ** 2
    v = 4 / math.pi**2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
    alpha = v / (v - iou + 1 + eps)
    return iou - rho2 / (cw**2 + ch**2 + eps) - v * alpha


@pytest.mark.timeout(10)
def test_offset_box_ciou_objectness_target_and_label_smoothing():
    model = fake_model(THREE_LEVEL_ANCHORS, STRIDES, nc=2)
    compute = ComputeLoss(model, hyp(obj_pw=3.0, label_smoothing=0.1))
    targets = torch.tensor([[0.0, 1.0, 4.5 / 8, 4.5 / 8, 0.25, 0.25]])
    preds = zero_preds(1, 2)
    preds[0][0, 0, 4, 4, :] = torch.tensor([1.0, 0.0, 0.5, 0.0, 0.0, -2.0, 3.0])
    loss, items = compute(preds, targets)

    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    pred_box = (2 * sig(1.0) - 0.5, 0.5, (2 * sig(0.5)) ** 2 * 2.0, 2.0)
    ciou = ciou_xywh(pred_box, (0.5, 0.5, 2.0, 2.0))
    assert 0 < ciou < 1
    expected_box = 0.05 * (1 - ciou)
    # objectness target at the positive cell = CIoU; logit 0 there, so its BCE is (3 * ciou + 1 - ciou) log 2
    obj_level0 = (63 * LOG2 + (1 + 2 * ciou) * LOG2) / 64
    expected_obj = 4.0 * obj_level0 + 1.4 * LOG2
    # smoothing 0.1: class targets [0.05, 0.95]
    expected_cls = 0.5 * (bce(-2.0, 0.05) + bce(3.0, 0.95)) / 2
    assert items[0].item() == pytest.approx(expected_box, rel=1e-5)
    assert items[1].item() == pytest.approx(expected_obj, rel=1e-5)
    assert items[2].item() == pytest.approx(expected_cls, rel=1e-5)
    assert loss.item() == pytest.approx(expected_box + expected_obj + expected_cls, rel=1e-5)


@pytest.mark.timeout(10)
def test_label_smoothing_moves_class_targets_by_half_eps():
    model = fake_model(THREE_LEVEL_ANCHORS, STRIDES, nc=3)
    targets = torch.tensor([[0.0, 2.0, 4.5 / 8, 4.5 / 8, 0.25, 0.25]])
    preds = zero_preds(1, 3)
    logits = [0.7, -1.2, 2.5]
    preds[0][0, 0, 4, 4, 5:] = torch.tensor(logits)
    for eps in (0.0, 0.2):
        _, items = ComputeLoss(model, hyp(cls=1.0, label_smoothing=eps))(preds, targets)
        cp, cn = 1 - eps / 2, eps / 2
        expected = (bce(logits[0], cn) + bce(logits[1], cn) + bce(logits[2], cp)) / 3
        assert items[2].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.timeout(10)
def test_single_class_has_no_class_loss_and_empty_targets_only_objectness():
    model = fake_model(THREE_LEVEL_ANCHORS, STRIDES, nc=1)
    compute = ComputeLoss(model, hyp())
    targets = torch.tensor([[0.0, 0.0, 4.5 / 8, 4.5 / 8, 0.25, 0.25]])
    _, items = compute(zero_preds(1, 1), targets)
    assert items[2].item() == 0.0

    loss, items = compute(zero_preds(3, 1), torch.zeros(0, 6))
    assert items[0].item() == 0.0 and items[2].item() == 0.0
    assert items[1].item() == pytest.approx(5.4 * LOG2, rel=1e-6)
    assert loss.item() == pytest.approx(3 * 5.4 * LOG2, rel=1e-6)


@pytest.mark.timeout(10)
def test_build_targets_picks_anchors_by_ratio_and_two_neighbour_cells():
    # one level, 8x8 grid; target 2x2 cells: ratios 2, 2/3, 1/5 -> anchors 0 and 1 pass anchor_t = 4
    model = fake_model([[[1.0, 1.0], [3.0, 3.0], [10.0, 10.0]]], [8.0], nc=2)
    compute = ComputeLoss(model, hyp())
    preds = [torch.zeros(1, 3, 8, 8, 7)]
    # grid xy (2.3, 5.8): 0.3 into its column -> also the left cell; 0.2 from its bottom -> also the cell below
    targets = torch.tensor([[0.0, 1.0, 2.3 / 8, 5.8 / 8, 0.25, 0.25]])
    tcls, tbox, indices, anchors = compute.build_targets(preds, targets)
    b, a, gj, gi = indices[0]
    got = sorted(zip(a.tolist(), gj.tolist(), gi.tolist()))
    expected = sorted((anc, j, i) for anc in (0, 1) for (j, i) in ((5, 2), (5, 1), (6, 2)))
    assert got == expected
    assert tcls[0].tolist() == [1] * 6 and b.tolist() == [0] * 6
    # box centres relative to each chosen cell's corner; sizes in grid units
    for (anc, j, i), box, anchor in zip(zip(a.tolist(), gj.tolist(), gi.tolist()), tbox[0], anchors[0]):
        assert box.tolist() == pytest.approx([2.3 - i, 5.8 - j, 2.0, 2.0], abs=1e-5)
        assert anchor.tolist() == [1.0 + 2 * anc] * 2


@pytest.mark.timeout(10)
def test_build_targets_near_grid_edges_adds_no_outside_cell_and_clamps():
    model = fake_model([[[2.0, 2.0]]], [8.0], nc=2)
    compute = ComputeLoss(model, hyp())
    preds = [torch.zeros(1, 1, 8, 8, 7)]
    # gx 0.3: left cell would be outside (gx < 1), right is farther than half a cell -> column 0 only.
    # gy 8.0 (the bottom edge): its cell row 8 is clamped to 7, and the row above is added (0.0 < 0.5).
    targets = torch.tensor([[0.0, 0.0, 0.3 / 8, 1.0, 0.25, 0.25]])
    _, tbox, indices, _ = compute.build_targets(preds, targets)
    _, _, gj, gi = indices[0]
    assert gi.tolist() == [0, 0]
    assert gj.tolist() == [7, 7]
    assert tbox[0][:, :2].flatten().tolist() == pytest.approx([0.3, 1.0, 0.3, 1.0], abs=1e-5)


@pytest.mark.timeout(10)
def test_focal_loss_values():
    logits = torch.tensor([0.0, 0.0, 2.0])
    true = torch.tensor([1.0, 0.0, 1.0])
    gamma = 1.5
    per_element = FocalLoss(torch.nn.BCEWithLogitsLoss(reduction="none"), gamma=gamma)(logits, true)
    p2 = 1 / (1 + math.exp(-2.0))
    expected = [
        0.25 * 0.5**gamma * LOG2,  # positive at p = 0.5: alpha 0.25
        0.75 * 0.5**gamma * LOG2,  # negative at p = 0.5: 1 - alpha
        0.25 * (1 - p2) ** gamma * softplus(-2.0),  # confident positive is down-weighted by (1 - p)^gamma
    ]
    assert per_element.tolist() == pytest.approx(expected, rel=1e-6)
    mean = FocalLoss(torch.nn.BCEWithLogitsLoss(), gamma=gamma)(logits, true)
    assert mean.item() == pytest.approx(sum(expected) / 3, rel=1e-6)
    # gamma 0 and alpha 0.5 is plain BCE halved
    half = FocalLoss(torch.nn.BCEWithLogitsLoss(), gamma=0.0, alpha=0.5)(logits, true)
    assert half.item() == pytest.approx(0.5 * (2 * LOG2 + softplus(-2.0)) / 3, rel=1e-6)


@pytest.mark.timeout(10)
def test_fl_gamma_switches_objectness_to_focal_loss():
    model = fake_model(THREE_LEVEL_ANCHORS, STRIDES, nc=2)
    compute = ComputeLoss(model, hyp(fl_gamma=2.0))
    targets = torch.tensor([[0.0, 1.0, 4.5 / 8, 4.5 / 8, 0.25, 0.25]])
    _, items = compute(zero_preds(1, 2), targets)
    # every logit is 0 (p_t = 0.5): BCE log 2 times alpha_t times 0.5^2; one positive (target CIoU ~ 1)
    focal = 0.25 * LOG2
    obj_level0 = focal * (0.25 * 1 + 0.75 * 63) / 64
    expected_obj = 4.0 * obj_level0 + 1.4 * focal * 0.75
    expected_cls = 0.5 * focal * (0.25 + 0.75) / 2
    assert items[1].item() == pytest.approx(expected_obj, rel=1e-5)
    assert items[2].item() == pytest.approx(expected_cls, rel=1e-5)


@pytest.mark.timeout(20)
def test_real_model_loss_is_finite_and_backpropagates():
    from yolo_ray.models import build_model

    torch.manual_seed(0)
    model = build_model("yolov5n", nc=3).train()
    imgs = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0.0, 2.0, 0.5, 0.5, 0.3, 0.4], [1.0, 0.0, 0.2, 0.7, 0.1, 0.1]])
    loss, items = ComputeLoss(model, hyp())(model(imgs), targets)
    assert loss.shape == (1,) and items.shape == (3,) and torch.isfinite(loss).all()
    assert (items > 0).all()
    loss.backward()
    assert model.model[-1].m[0].weight.grad.abs().sum() > 0
