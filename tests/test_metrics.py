"""IoU variants, AP, fitness, NMS and TP matching against values worked out by hand."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from yolo_ray.metrics import (
    ap_per_class,
    bbox_iou,
    box_iou,
    match_predictions,
    nms_kernel,
    non_max_suppression,
)
from yolo_ray.scores import RESULT_KEYS, fitness

IOUV = torch.linspace(0.5, 0.95, 10)


@pytest.mark.timeout(10)
def test_box_iou_pairwise():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [10.0, 10.0, 11.0, 11.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 4.0]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    # overlap 1 / union 7; identical; overlap 2 / union 4 + 4 - 2
    assert iou[0].tolist() == pytest.approx([1 / 7, 1.0, 2 / 6], abs=1e-6)
    assert iou[1].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.timeout(10)
def test_bbox_iou_variants_by_hand():
    b1 = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b2 = torch.tensor([1.0, 1.0, 3.0, 3.0])
    iou = 1 / 7
    assert bbox_iou(b1, b2, xywh=False).item() == pytest.approx(iou, abs=1e-6)
    # enclosing box [0, 0, 3, 3]: area 9, diagonal^2 18; centres (1, 1) and (2, 2): distance^2 2
    assert bbox_iou(b1, b2, xywh=False, GIoU=True).item() == pytest.approx(iou - (9 - 7) / 9, abs=1e-6)
    assert bbox_iou(b1, b2, xywh=False, DIoU=True).item() == pytest.approx(iou - 2 / 18, abs=1e-6)
    # equal aspect ratios: the CIoU aspect term vanishes
    assert bbox_iou(b1, b2, xywh=False, CIoU=True).item() == pytest.approx(iou - 2 / 18, abs=1e-6)

    # xywh, different aspect ratios: (2, 2, 4, 2) vs (3, 2, 2, 4), overlap 2 x 2
    c1, c2 = torch.tensor([[2.0, 2.0, 4.0, 2.0]]), torch.tensor([[3.0, 2.0, 2.0, 4.0]])
    iou = 4 / (8 + 8 - 4)
    rho2, diag2 = 1.0, 4.0**2 + 4.0**2  # enclosing box x 0..4, y 0..4
    v = 4 / math.pi**2 * (math.atan(2 / 4) - math.atan(4 / 2)) ** 2
    alpha = v / (v - iou + 1)
    got = bbox_iou(c1, c2, CIoU=True)
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx(iou - rho2 / diag2 - alpha * v, abs=1e-6)


@pytest.mark.timeout(10)
def test_ciou_alpha_is_not_differentiated():
    w = torch.tensor([4.0], requires_grad=True)
    box = torch.cat((torch.tensor([2.0, 2.0]), w, torch.tensor([2.0])))
    ciou = bbox_iou(box, torch.tensor([3.0, 2.0, 2.0, 4.0]), CIoU=True)
    ciou.sum().backward()
    assert torch.isfinite(w.grad).all() and w.grad.item() != 0


@pytest.mark.timeout(10)
def test_perfect_predictions():
    # 3 detections of class 0 and 2 of class 5, all correct at every IoU threshold
    tp = np.ones((5, 10), dtype=bool)
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
    pred_cls = np.array([0, 0, 0, 5, 5])
    target_cls = np.array([0, 0, 0, 5, 5])
    res = ap_per_class(tp, conf, pred_cls, target_cls)
    assert res.classes.tolist() == [0, 5]
    assert res.ap.shape == (2, 10)
    # COCO 101-point interpolation: the envelope drops to the appended precision 0 at recall exactly 1,
    # so the last trapezoid is halved; a perfect curve scores 1 - 0.01 / 2 (upstream's mAP ceiling).
    assert res.ap == pytest.approx(np.full((2, 10), 0.995))
    assert res.p == pytest.approx([1.0, 1.0]) and res.r == pytest.approx([1.0, 1.0])
    assert res.f1 == pytest.approx([1.0, 1.0])


@pytest.mark.timeout(10)
def test_ap_by_hand_tp_fp_tp():
    # 3 ground truths; detections at conf 0.9 (TP), 0.8 (FP), 0.7 (TP), given out of order
    tp = np.array([[True] * 10, [False] * 10, [True] * 10])[[2, 0, 1]]
    conf = np.array([0.7, 0.9, 0.8])
    res = ap_per_class(tp, conf, np.zeros(3), np.zeros(3))

    # recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3. Envelope over recall, padded with (0, 1) and (1, 0):
    # 1 up to recall 1/3, 2/3 up to 2/3, then linear from 2/3 at recall 2/3 down to 0 at recall 1.
    def envelope(x: float) -> float:
        if x < 1 / 3:
            return 1.0
        if x <= 2 / 3:
            return 2 / 3
        return 2 / 3 * (1 - x) / (1 / 3)

    xs = [k / 100 for k in range(101)]
    ys = [envelope(x) for x in xs]
    expected = sum((ys[k] + ys[k + 1]) / 2 * 0.01 for k in range(100))
    assert res.ap[0] == pytest.approx(np.full(10, expected), abs=1e-9)
    assert expected == pytest.approx(2 / 3, abs=0.01)  # the exact area under the envelope


@pytest.mark.timeout(10)
def test_ap_per_threshold_classes_only_from_targets_and_best_f1_point():
    # class 3 has 2 GT; its TP at conf 0.9 holds at every threshold, the one at 0.6 only up to IoU 0.70.
    # A confident prediction of class 7, which has no ground truth, must not appear in the results.
    tp = np.array([[True] * 10, [True] * 5 + [False] * 5, [True] * 10])
    res = ap_per_class(tp, np.array([0.9, 0.6, 0.99]), np.array([3, 3, 7]), np.array([3, 3]))
    assert res.classes.tolist() == [3] and res.ap.shape == (1, 10)
    assert res.ap[0, :5] == pytest.approx([0.995] * 5)
    # at stricter IoU: recall 1/2 at precision 1, then the envelope falls linearly from 1/2 to 0 at recall 1:
    # area 0.5 + 0.125; the 101-point trapezoid differs by at most a quarter grid step at the drop
    assert res.ap[0, 5:] == pytest.approx([0.625] * 5, abs=0.003)
    assert len(set(res.ap[0, 5:].tolist())) == 1
    # mean F1 is best for confidences below 0.6, where both detections count at IoU 0.5: P = R = 1
    assert res.p[0] == pytest.approx(1.0) and res.r[0] == pytest.approx(1.0)


@pytest.mark.timeout(10)
def test_ap_with_no_targets_is_empty():
    res = ap_per_class(np.ones((2, 10), bool), np.array([0.5, 0.4]), np.array([0, 1]), np.array([]))
    assert res.ap.shape == (0, 10) and res.p.shape == (0,) and res.classes.shape == (0,)


@pytest.mark.timeout(10)
def test_fitness_weights_map_columns():
    x = np.array([[0.9, 0.8, 0.6, 0.4, 1.0, 2.0, 3.0], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    assert fitness(x) == pytest.approx([0.1 * 0.6 + 0.9 * 0.4, 1.0])
    assert RESULT_KEYS[:4] == ("metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95")
    assert len(RESULT_KEYS) == 7 and RESULT_KEYS[4:] == ("val/box_loss", "val/obj_loss", "val/cls_loss")


def prediction(rows: list[list[float]]) -> torch.Tensor:
    """(1, N, 5 + nc) eval output from rows [x, y, w, h, obj, cls probs...]."""
    return torch.tensor([rows], dtype=torch.float32)


@pytest.mark.timeout(10)
def test_nms_keeps_higher_of_overlapping_same_class_boxes():
    pred = prediction(
        [
            [50, 50, 20, 20, 0.8, 0.9, 0.1],  # conf 0.72, class 0
            [51, 50, 20, 20, 0.9, 0.9, 0.1],  # conf 0.81, class 0, IoU ~0.9 with the first
            [150, 150, 10, 10, 0.9, 0.2, 0.1],  # conf 0.18 < 0.25: dropped
        ]
    )
    out = non_max_suppression(pred)
    assert len(out) == 1 and out[0].shape == (1, 6)
    assert out[0][0].tolist() == pytest.approx([41, 40, 61, 60, 0.81, 0.0], abs=1e-5)


@pytest.mark.timeout(10)
def test_nms_class_aware_unless_agnostic():
    pred = prediction(
        [
            [50, 50, 20, 20, 0.9, 0.9, 0.1],  # class 0, conf 0.81
            [51, 50, 20, 20, 0.8, 0.1, 0.9],  # class 1, conf 0.72
        ]
    )
    out = non_max_suppression(pred)[0]
    assert sorted(out[:, 5].tolist()) == [0.0, 1.0]
    agnostic = non_max_suppression(pred, agnostic=True)[0]
    assert agnostic.shape == (1, 6) and agnostic[0, 5].item() == 0.0
    only_1 = non_max_suppression(pred, classes=[1])[0]
    assert only_1.shape == (1, 6) and only_1[0, 5].item() == 1.0


@pytest.mark.timeout(10)
def test_nms_multi_label_max_det_and_batch():
    pred = prediction([[50, 50, 20, 20, 0.9, 0.6, 0.5, 0.1]])  # confs 0.54, 0.45, 0.09
    single = non_max_suppression(pred)[0]
    assert single[:, 4:].flatten().tolist() == pytest.approx([0.54, 0.0])
    multi = non_max_suppression(pred, multi_label=True)[0]
    assert multi[:, 4:].flatten().tolist() == pytest.approx([0.54, 0.0, 0.45, 1.0])

    # 10 disjoint boxes in image 0, nothing above threshold in image 1
    boxes = [[20 * k + 5, 5, 8, 8, 0.5 + 0.04 * k, 1.0] for k in range(10)]
    batch = torch.stack([torch.tensor(boxes), torch.tensor(boxes) * torch.tensor([1, 1, 1, 1, 0.1, 1])])
    out = non_max_suppression(batch, max_det=4)
    assert out[0].shape == (4, 6) and out[1].shape == (0, 6)
    assert out[0][:, 4].tolist() == pytest.approx([0.86, 0.82, 0.78, 0.74])  # highest confidences first
    # a (pred, raw maps) tuple, as the model returns in eval mode, is accepted
    assert non_max_suppression((batch, []), max_det=4)[0].shape == (4, 6)


@pytest.mark.timeout(10)
def test_nms_labels_are_added_as_confident_detections():
    pred = prediction([[50, 50, 20, 20, 0.9, 0.9, 0.1]])
    labels = [torch.tensor([[1.0, 150, 150, 10, 10]])]
    out = non_max_suppression(pred, labels=labels)[0]
    assert out.flatten().tolist() == pytest.approx([145, 145, 155, 155, 1.0, 1.0, 40, 40, 60, 60, 0.81, 0.0])


@pytest.mark.timeout(10)
def test_match_predictions_thresholds_class_and_uniqueness():
    labels = torch.tensor([[0.0, 0.0, 0.0, 10.0, 10.0], [1.0, 20.0, 20.0, 30.0, 30.0]])
    # rows in NMS order (confidence descending)
    detections = torch.tensor(
        [
            [0.0, 0.0, 10.0, 6.2, 0.9, 0.0],  # IoU 0.62 with label 0
            [0.0, 0.0, 10.0, 9.0, 0.8, 0.0],  # IoU 0.90 with label 0
            [20.0, 20.0, 30.0, 30.0, 0.7, 0.0],  # perfect box, wrong class
            [20.0, 20.0, 30.0, 27.5, 0.6, 1.0],  # IoU 0.75 with label 1
        ]
    )
    correct = match_predictions(detections, labels, IOUV)
    assert correct.dtype == torch.bool and correct.shape == (4, 10)
    # Where both detections pass the threshold (0.50..0.60) the label goes to the first row, the more
    # confident one (upstream v7.0's order after de-duplication); from 0.65 to 0.90 only the 0.90 box passes.
    assert correct[0].tolist() == [True] * 3 + [False] * 7
    assert correct[1].tolist() == [False] * 3 + [True] * 6 + [False]
    assert not correct[2].any()
    # 0.75 passes 0.50..0.75
    assert correct[3].tolist() == [True] * 6 + [False] * 4
    # each label is claimed at most once per threshold
    assert (correct[:2].sum(0) <= 1).all()

    # alone, the 0.62 detection is a TP at 0.50, 0.55, 0.60
    alone = match_predictions(detections[:1], labels, IOUV)
    assert alone[0].tolist() == [True] * 3 + [False] * 7
    assert not match_predictions(torch.zeros(0, 6), labels, IOUV).any()


@pytest.mark.timeout(10)
def test_match_predictions_detection_between_two_labels_takes_the_closer():
    labels = torch.tensor([[2.0, 0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 3.0, 10.0, 13.0]])
    detection = torch.tensor([[0.0, 1.0, 10.0, 11.0, 0.9, 2.0]])  # IoU 90/110 with label 0, 80/120 with label 1
    assert match_predictions(detection, labels, IOUV)[0].tolist() == [True] * 7 + [False] * 3
    # a second, exact detection of label 1 is a TP at every threshold; the first keeps label 0
    detections = torch.cat((detection, torch.tensor([[0.0, 3.0, 10.0, 13.0, 0.8, 2.0]])))
    correct = match_predictions(detections, labels, IOUV)
    assert correct[1].all()
    assert correct[0].tolist() == [True] * 7 + [False] * 3


def test_nms_kernel_keeps_what_torchvision_keeps():
    """The kernel loaded without torchvision's package is torchvision's: same kept indices, same order,
    on crowded random boxes with tied scores (run in a fresh process, where torchvision is not imported)."""
    code = (
        "import sys, torch\n"
        "from yolo_ray.metrics import nms_kernel\n"
        "g = torch.Generator().manual_seed(0)\n"
        "xy = torch.rand(3000, 2, generator=g) * 200\n"
        "boxes = torch.cat((xy, xy + 5 + torch.rand(3000, 2, generator=g) * 60), 1)\n"
        "scores = (torch.rand(3000, generator=g) * 50).round() / 50\n"
        "keep = nms_kernel()(boxes, scores, 0.45)\n"
        "assert 'torchvision' not in sys.modules and 'torch._dynamo' not in sys.modules, 'imported the package'\n"
        "import torchvision\n"
        "expected = torchvision.ops.nms(boxes, scores, 0.45)\n"
        "assert 100 < len(keep) < 3000 and torch.equal(keep, expected), (len(keep), len(expected))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert nms_kernel() is nms_kernel()  # loaded once per process
