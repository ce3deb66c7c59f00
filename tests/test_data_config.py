"""Data yaml forms: folders, .txt lists, lists of either, names as list or dict, relative `path`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from yolo_ray.config import UserError
from yolo_ray.data import load_data_config


def make_tree(root: Path) -> None:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "images" / split / "a.jpg").write_bytes(b"")


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.timeout(10)
def test_relative_path_resolves_against_yaml_folder(tmp_path, monkeypatch):
    make_tree(tmp_path / "ds")
    cfg_file = write_yaml(
        tmp_path / "cfg" / "data.yaml",
        {"path": "../ds", "train": "images/train", "val": "images/val", "names": ["a", "b"]},
    )
    monkeypatch.chdir("/")  # the working directory must not matter
    cfg = load_data_config(cfg_file)
    assert cfg["path"] == (tmp_path / "ds").resolve()
    assert cfg["train"] == [str((tmp_path / "ds" / "images" / "train").resolve())]
    assert cfg["val"] == [str((tmp_path / "ds" / "images" / "val").resolve())]
    assert cfg["names"] == {0: "a", 1: "b"} and cfg["nc"] == 2
    assert cfg["yaml_file"] == cfg_file.resolve()


@pytest.mark.timeout(10)
def test_missing_path_key_means_yaml_folder_and_names_dict(tmp_path):
    make_tree(tmp_path)
    cfg = load_data_config(
        write_yaml(
            tmp_path / "d.yaml", {"train": "images/train", "val": "images/val", "names": {1: "dog", 0: "cat"}, "nc": 2}
        )
    )
    assert cfg["path"] == tmp_path.resolve()
    assert cfg["names"] == {0: "cat", 1: "dog"}


@pytest.mark.timeout(10)
def test_txt_lists_and_lists_of_sources(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "train.txt").write_text("./images/train/a.jpg\n")
    cfg = load_data_config(
        write_yaml(
            tmp_path / "d.yaml",
            {"path": str(tmp_path), "train": ["train.txt", "images/val"], "val": "images/val", "names": ["x"]},
        )
    )
    assert cfg["train"] == [str(tmp_path / "train.txt"), str(tmp_path / "images" / "val")]


@pytest.mark.timeout(10)
def test_nc_without_names_makes_generic_names(tmp_path):
    make_tree(tmp_path)
    cfg = load_data_config(write_yaml(tmp_path / "d.yaml", {"train": "images/train", "val": "images/val", "nc": 3}))
    assert cfg["names"] == {0: "class0", 1: "class1", 2: "class2"}


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "data, message",
    [
        ({"train": "images/train", "val": "images/val", "names": ["a", "b"], "nc": 3}, "nc=3 but 'names' has 2"),
        ({"train": "images/train", "val": "images/nowhere", "names": ["a"]}, "val images not found"),
        ({"val": "images/val", "names": ["a"]}, "'train' is missing"),
        ({"train": "images/train", "val": "images/val", "names": {0: "a", 2: "c"}}, "without gaps"),
        ({"train": "images/train", "val": "images/val"}, "needs 'names'"),
        ({"train": "images/train", "val": "images/val", "names": "abc"}, "must be a list"),
    ],
)
def test_problems_raise_user_error_naming_the_yaml(tmp_path, data, message):
    make_tree(tmp_path)
    path = write_yaml(tmp_path / "bad.yaml", data)
    with pytest.raises(UserError, match=message) as info:
        load_data_config(path)
    assert str(path) in str(info.value)


@pytest.mark.timeout(10)
def test_coco128_config(coco128):
    cfg = load_data_config(coco128)
    assert cfg["nc"] == 80 and cfg["names"][0] == "person" and cfg["names"][79] == "toothbrush"
    assert all(Path(p).is_dir() for p in cfg["train"] + cfg["val"])
