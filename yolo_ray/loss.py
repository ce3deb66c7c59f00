"""The YOLOv5 v7.0 training loss: CIoU box loss, IoU-targeted objectness and BCE class loss."""

from __future__ import annotations

import torch
from torch import nn

from yolo_ray.metrics import bbox_iou
from yolo_ray.models import de_parallel

# Objectness weight per output level, small strides first: fine maps hold most cells but few objects.
LEVEL_BALANCE_3 = [4.0, 1.0, 0.4]
LEVEL_BALANCE_OTHER = [4.0, 1.0, 0.25, 0.06, 0.02]

# A target also trains the neighbouring cell on each axis whose edge it lies within this distance of,
# in grid cells; with 0.5 that is the nearer of left/right and the nearer of up/down.
NEIGHBOUR_REACH = 0.5
# Cell offsets in grid units: centre, left, up, right, down (subtracted from the target's grid xy).
CELL_OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32) * NEIGHBOUR_REACH


def smooth_bce_targets(eps: float = 0.0) -> tuple[float, float]:
    """(positive, negative) class targets with label smoothing eps."""
    return 1.0 - 0.5 * eps, 0.5 * eps


class FocalLoss(nn.Module):
    """Focal loss around a BCE-with-logits loss: scales each term by alpha_t * (1 - p_t) ** gamma."""

    def __init__(self, loss_fcn: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25):
        super().__init__()
        self.loss_fcn = loss_fcn
        self.gamma = gamma
        self.alpha = alpha
        self.reduction = loss_fcn.reduction
        self.loss_fcn.reduction = "none"  # the modulation needs per-element terms

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fcn(pred, true)
        prob = torch.sigmoid(pred)
        p_t = true * prob + (1 - true) * (1 - prob)
        alpha_t = true * self.alpha + (1 - true) * (1 - self.alpha)
        loss = loss * alpha_t * (1.0 - p_t) ** self.gamma
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


class ComputeLoss:
    """Callable loss for a DetectionModel: (preds, targets) -> (loss * bs of shape (1,), [box, obj, cls]).

    preds: the train-mode list of raw maps (bs, na, ny, nx, 5 + nc). targets (n, 6): image index, class,
    x, y, w, h normalised. The hyp is used as given; gain scaling by levels/classes/size is the caller's.
    """

    def __init__(self, model: nn.Module, hyp: dict[str, float]):
        detect = de_parallel(model).model[-1]
        device = detect.anchors.device
        self.hyp = hyp
        bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([hyp["cls_pw"]], device=device))
        bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([hyp["obj_pw"]], device=device))
        gamma = hyp["fl_gamma"]
        if gamma > 0:
            bce_cls, bce_obj = FocalLoss(bce_cls, gamma), FocalLoss(bce_obj, gamma)
        self.bce_cls, self.bce_obj = bce_cls, bce_obj
        self.cp, self.cn = smooth_bce_targets(hyp.get("label_smoothing", 0.0))
        self.na, self.nc, self.nl = detect.na, detect.nc, detect.nl
        self.anchors = detect.anchors  # (nl, na, 2) in grid units; AutoAnchor edits it in place
        self.balance = LEVEL_BALANCE_3 if self.nl == 3 else LEVEL_BALANCE_OTHER
        self.device = device

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lbox = torch.zeros(1, device=self.device)
        lobj = torch.zeros(1, device=self.device)
        lcls = torch.zeros(1, device=self.device)
        tcls, tbox, indices, anchors = self.build_targets(preds, targets)

        for i, pi in enumerate(preds):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=self.device)
            n = b.shape[0]
            if n:
                pxy, pwh, _, pcls = pi[b, a, gj, gi].split((2, 2, 1, self.nc), 1)
                # centre may move half a cell beyond its own cell; size ranges over (0, 4) anchors
                pxy = pxy.sigmoid() * 2 - 0.5
                pwh = (pwh.sigmoid() * 2) ** 2 * anchors[i]
                iou = bbox_iou(torch.cat((pxy, pwh), 1), tbox[i], CIoU=True).squeeze(-1)
                lbox += (1.0 - iou).mean()

                # objectness learns how well the box fits (upstream's gr = 1, unsorted: when two targets
                # share a cell the later one's IoU is written)
                tobj[b, a, gj, gi] = iou.detach().clamp(0).type(tobj.dtype)

                if self.nc > 1:  # a single class is learnt by objectness alone
                    t = torch.full_like(pcls, self.cn)
                    t[range(n), tcls[i]] = self.cp
                    lcls += self.bce_cls(pcls, t)

            lobj += self.bce_obj(pi[..., 4], tobj) * self.balance[i]

        lbox *= self.hyp["box"]
        lobj *= self.hyp["obj"]
        lcls *= self.hyp["cls"]
        bs = preds[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()

    def build_targets(
        self, preds: list[torch.Tensor], targets: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[torch.Tensor, ...]], list[torch.Tensor]]:
        """Assign each target to anchors and cells of every level.

        Returns per level: classes (k,), boxes (k, 4) [x, y within the cell, w, h in grid units],
        indices (image, anchor, grid y, grid x) and the matched anchors (k, 2).
        """
        na, nt = self.na, targets.shape[0]
        tcls, tbox, indices, anch = [], [], [], []
        gain = torch.ones(7, device=self.device)
        anchor_idx = torch.arange(na, device=self.device).float().view(na, 1).repeat(1, nt)
        # (na, nt, 7): every target once per anchor, with the anchor index appended
        targets = torch.cat((targets.repeat(na, 1, 1), anchor_idx[..., None]), 2)
        cell_offsets = CELL_OFFSETS.to(self.device)

        for i in range(self.nl):
            anchors, shape = self.anchors[i], preds[i].shape
            gain[2:6] = torch.tensor(shape, device=self.device)[[3, 2, 3, 2]].float()  # normalised -> grid
            t = targets * gain
            if nt:
                # keep anchor/target pairs whose width and height ratios both lie within anchor_t
                ratio = t[..., 4:6] / anchors[:, None]
                t = t[torch.max(ratio, 1 / ratio).max(2)[0] < self.hyp["anchor_t"]]

                gxy = t[:, 2:4]
                gxy_inverse = gain[[2, 3]] - gxy  # distance from the right/bottom edge of the grid
                left, up = ((gxy % 1 < NEIGHBOUR_REACH) & (gxy > 1)).T
                right, down = ((gxy_inverse % 1 < NEIGHBOUR_REACH) & (gxy_inverse > 1)).T
                use = torch.stack((torch.ones_like(left), left, up, right, down))
                t = t.repeat((5, 1, 1))[use]
                offsets = (torch.zeros_like(gxy)[None] + cell_offsets[:, None])[use]
            else:
                t = targets[0]
                offsets = 0

            bc, gxy, gwh, a = t.chunk(4, 1)
            a, (b, c) = a.long().view(-1), bc.long().T
            gij = (gxy - offsets).long()
            gij[:, 0].clamp_(0, shape[3] - 1)
            gij[:, 1].clamp_(0, shape[2] - 1)
            gi, gj = gij.T
            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy - gij, gwh), 1))
            anch.append(anchors[a])
            tcls.append(c)
        return tcls, tbox, indices, anch
