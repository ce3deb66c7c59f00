"""Search spaces: the shipped upstream table, the smaller shipped spaces, and bad files rejected clearly."""

from __future__ import annotations

import pytest

from yolo_ray.config import UserError
from yolo_ray.evolution import SEARCH_SPACE_DIR, load_search_space

# Upstream v6/v7 train.py `meta`, typed in from issue 5 (gain, low, high).
UPSTREAM_META = {
    "lr0": (1, 1e-5, 1e-1),
    "lrf": (1, 0.01, 1.0),
    "momentum": (0.3, 0.6, 0.98),
    "weight_decay": (1, 0, 0.001),
    "warmup_epochs": (1, 0, 5),
    "warmup_momentum": (1, 0, 0.95),
    "warmup_bias_lr": (1, 0, 0.2),
    "box": (1, 0.02, 0.2),
    "cls": (1, 0.2, 4),
    "cls_pw": (1, 0.5, 2),
    "obj": (1, 0.2, 4),
    "obj_pw": (1, 0.5, 2),
    "iou_t": (0, 0.1, 0.7),
    "anchor_t": (1, 2, 8),
    "anchors": (2, 2, 10),
    "fl_gamma": (0, 0, 2),
    "hsv_h": (1, 0, 0.1),
    "hsv_s": (1, 0, 0.9),
    "hsv_v": (1, 0, 0.9),
    "degrees": (1, 0, 45),
    "translate": (1, 0, 0.9),
    "scale": (1, 0, 0.9),
    "shear": (1, 0, 10),
    "perspective": (0, 0, 0.001),
    "flipud": (1, 0, 1),
    "fliplr": (0, 0, 1),
    "mosaic": (1, 0, 1),
    "mixup": (1, 0, 1),
    "copy_paste": (1, 0, 1),
}


@pytest.mark.timeout(10)
def test_shipped_yolov5_space_is_upstream_meta_in_order():
    space = load_search_space("yolov5")
    assert list(space) == list(UPSTREAM_META)
    assert space == {k: tuple(float(x) for x in v) for k, v in UPSTREAM_META.items()}
    assert all(isinstance(x, float) for entry in space.values() for x in entry)
    assert load_search_space("yolov5.yaml") == space
    assert load_search_space(SEARCH_SPACE_DIR / "yolov5.yaml") == space


@pytest.mark.timeout(10)
def test_partial_spaces_split_the_upstream_table():
    augmentation = load_search_space("augmentation")
    optimization = load_search_space("optimization")
    assert not set(augmentation) & set(optimization)
    assert set(augmentation) | set(optimization) == set(UPSTREAM_META)
    assert {"hsv_h", "mosaic", "mixup"} <= set(augmentation)
    assert {"lr0", "momentum", "obj_pw", "anchor_t"} <= set(optimization)
    full = load_search_space("yolov5")
    for key, entry in {**augmentation, **optimization}.items():
        assert entry == full[key]


@pytest.mark.timeout(10)
def test_exponent_strings_are_numbers(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("lr0: [1, 1e-5, 1e-1]\nweight_decay: ['1', '0', '5e-4']\n")  # PyYAML keeps 1e-5 a str
    assert load_search_space(path) == {"lr0": (1.0, 1e-5, 0.1), "weight_decay": (1.0, 0.0, 5e-4)}


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "content, message",
    [
        ("lr0: [1, abc, 0.1]\n", "lr0: [gain, low, high] must be numbers"),
        ("lr0: [1, true, 0.1]\n", "lr0: [gain, low, high] must be numbers"),
        ("lr0: [-0.5, 0.001, 0.1]\n", "lr0: gain must be >= 0, got -0.5"),
        ("lr0: [1, 0.1, 0.01]\n", "lr0: low 0.1 > high 0.01"),
        ("lr0: [1, 0.001, 0.1]\nlearning_rate: [1, 0, 1]\n", "'learning_rate' is not a YOLOv5 hyperparameter"),
        ("lr0: [1, 0.001]\n", "lr0: expected [gain, low, high]"),
        ("lr0: [1, 0.001, 0.1, 4]\n", "lr0: expected [gain, low, high]"),
        ("lr0: 0.01\n", "lr0: expected [gain, low, high]"),
        ("lr0: [0, 0.001, 0.1]\niou_t: [0, 0.1, 0.7]\n", "no key has a gain > 0"),
        ("{}\n", "no key has a gain > 0"),
        ("- [1, 0, 1]\n", "expected a YAML mapping"),
    ],
)
def test_bad_spaces_are_rejected_naming_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(UserError) as info:
        load_search_space(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


@pytest.mark.timeout(10)
def test_every_problem_is_reported_on_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lr0: [1, 0.1, 0.01]\nmomentum: [-1, 0.6, 0.98]\nfoo: [1, 0, 1]\nbox: [1, 0.02, 0.2]\n")
    with pytest.raises(UserError) as info:
        load_search_space(path)
    text = str(info.value)
    assert "\n" not in text
    assert "lr0: low 0.1 > high 0.01" in text and "momentum: gain must be >= 0" in text and "'foo'" in text
    assert "box" not in text


@pytest.mark.timeout(10)
def test_unknown_space_name_lists_the_shipped_ones():
    with pytest.raises(UserError, match="no_such_space: search space not found") as info:
        load_search_space("no_such_space")
    assert all(name in str(info.value) for name in ("augmentation", "optimization", "yolov5"))
