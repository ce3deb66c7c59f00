"""Dataset yamls by name (coco128, coco, VOC) and datasets downloaded on first use, for real over HTTP from
127.0.0.1, from small archives made here in the layouts of upstream's: unpacked where upstream puts them,
COCO's and VOC's script steps done in package code, and a yaml's script never run."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from asset_server import AssetServer
from yolo_ray.config import UserError, load_hyp
from yolo_ray.data import check_training_data, load_data_config
from yolo_ray.data.fetch import datasets_dir

VOC_NAMES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def jpeg(seed: int, w: int = 64, h: int = 48) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def zip_bytes(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def tar_gz_bytes(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        for name, data in members.items():
            data = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def server(tmp_path, monkeypatch):
    srv = AssetServer()
    monkeypatch.setenv("YOLO_RAY_ASSETS_URL", srv.url)
    monkeypatch.setenv("YOLO_RAY_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.chdir(tmp_path)
    yield srv
    srv.close()


def test_coco128_by_name_is_downloaded_once_into_the_datasets_folder(server, tmp_path):
    server.files["coco128.zip"] = zip_bytes(
        {
            **{f"coco128/images/train2017/{i:012d}.jpg": jpeg(i) for i in range(3)},
            **{f"coco128/labels/train2017/{i:012d}.txt": f"{i} 0.5 0.5 0.25 0.25\n" for i in range(3)},
            "__MACOSX/._junk": "mac metadata, left out as upstream's unzip does",
        }
    )
    data = load_data_config("coco128.yaml")
    root = tmp_path / "datasets" / "coco128"
    assert datasets_dir() == root.parent
    assert data["path"] == root and data["train"] == [str(root / "images" / "train2017")]
    assert data["nc"] == 80 and data["names"][0] == "person"
    assert sorted(p.name for p in (root / "labels" / "train2017").iterdir()) == [f"{i:012d}.txt" for i in range(3)]
    assert sorted(p.name for p in root.parent.iterdir()) == [".coco128.lock", "coco128"]  # no staging left
    check_training_data(data, load_hyp(), single_cls=False)
    assert load_data_config("coco128")["train"] == data["train"]  # without .yaml too, and not fetched again
    assert server.requests["coco128.zip"] == 1


def coco_archives() -> dict[str, bytes]:
    return {
        "coco2017labels.zip": zip_bytes(
            {
                "coco/labels/train2017/000000000009.txt": "45 0.479 0.688 0.955 0.595\n",
                "coco/labels/val2017/000000000139.txt": "58 0.386 0.245 0.017 0.037\n",
                "coco/train2017.txt": "./images/train2017/000000000009.jpg\n",
                "coco/val2017.txt": "./images/val2017/000000000139.jpg\n",
                "coco/test-dev2017.txt": "./images/test2017/000000000001.jpg\n",
            }
        ),
        "train2017.zip": zip_bytes({"train2017/000000000009.jpg": jpeg(9)}),
        "val2017.zip": zip_bytes({"val2017/000000000139.jpg": jpeg(139)}),
        "test2017.zip": zip_bytes({"test2017/000000000001.jpg": jpeg(1)}),
    }


def test_coco_labels_and_images_go_where_upstreams_script_puts_them_and_a_failed_archive_resumes(server, tmp_path):
    archives = coco_archives()
    server.files.update({k: v for k, v in archives.items() if k != "test2017.zip"})  # the last one is missing
    with pytest.raises(UserError, match=r"test2017\.zip: cannot download .*HTTP 404"):
        load_data_config("coco.yaml")
    assert not (tmp_path / "datasets" / "coco").exists()  # nothing half-made in place
    server.files["test2017.zip"] = archives["test2017.zip"]
    data = load_data_config("coco.yaml")
    root = tmp_path / "datasets" / "coco"
    assert data["train"] == [str(root / "train2017.txt")] and data["test"] == [str(root / "test-dev2017.txt")]
    for image in ("train2017/000000000009.jpg", "val2017/000000000139.jpg", "test2017/000000000001.jpg"):
        assert (root / "images" / image).read_bytes() == zipfile.ZipFile(
            io.BytesIO(archives[Path(image).parent.name + ".zip"])
        ).read(image)
    check_training_data(data, load_hyp(), single_cls=False)
    # archives finished before the failure were kept and not fetched again
    assert server.requests == {"coco2017labels.zip": 1, "train2017.zip": 1, "val2017.zip": 1, "test2017.zip": 2}


def voc_xml(w: int, h: int, objects: list[tuple[str, int, tuple[int, int, int, int]]]) -> str:
    rows = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, d, b in objects
    )
    return f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{rows}</annotation>"


def voc_members(year: str, sets: dict[str, list[str]]) -> dict[str, bytes | str]:
    base = f"VOCdevkit/VOC{year}"
    members: dict[str, bytes | str] = {}
    for image_set, ids in sets.items():
        members[f"{base}/ImageSets/Main/{image_set}.txt"] = "".join(f"{i}\n" for i in ids)
        for n, i in enumerate(ids):
            members[f"{base}/JPEGImages/{i}.jpg"] = jpeg(n + len(members), 100, 50)
            members[f"{base}/Annotations/{i}.xml"] = voc_xml(
                100,
                50,
                [
                    ("dog", 0, (11, 6, 51, 26)),  # kept: class 11, centre one pixel up-left as upstream
                    ("person", 1, (1, 1, 10, 10)),  # difficult: left out
                    ("unicorn", 0, (1, 1, 10, 10)),  # not a VOC class: left out
                ],
            )
    return members


def test_voc_archives_are_converted_to_yolo_folders_and_labels(server, tmp_path):
    server.files.update(
        {
            "VOCtrainval_06-Nov-2007.zip": zip_bytes(voc_members("2007", {"train": ["000005"], "val": ["000007"]})),
            "VOCtest_06-Nov-2007.zip": zip_bytes(voc_members("2007", {"test": ["000001"]})),
            "VOCtrainval_11-May-2012.zip": zip_bytes(
                voc_members("2012", {"train": ["2008_000008"], "val": ["2008_000009"]})
            ),
        }
    )
    data = load_data_config("VOC.yaml")
    root = tmp_path / "datasets" / "VOC"
    assert data["names"] == dict(enumerate(VOC_NAMES))
    assert data["train"] == [str(root / "images" / s) for s in ("train2012", "train2007", "val2012", "val2007")]
    assert data["val"] == [str(root / "images" / "test2007")]
    layout = {
        "train2007": "000005",
        "val2007": "000007",
        "test2007": "000001",
        "train2012": "2008_000008",
        "val2012": "2008_000009",
    }
    for folder, image_id in layout.items():
        assert [p.name for p in (root / "images" / folder).iterdir()] == [f"{image_id}.jpg"]
        label = (root / "labels" / folder / f"{image_id}.txt").read_text()
        assert label == "11 0.3 0.3 0.4 0.4\n"  # ((11+51)/2-1)/100, ((6+26)/2-1)/50, 40/100, 20/50
    check_training_data(data, load_hyp(), single_cls=False)


def test_a_users_yaml_with_an_archive_url_downloads_beside_it(server, tmp_path):
    server.files["mine.tar.gz"] = tar_gz_bytes(
        {
            "mine/images/train/a.jpg": jpeg(1),
            "mine/labels/train/a.txt": "0 0.5 0.5 0.5 0.5\n",
        }
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "mine.yaml").write_text(
        f"path: ../data/mine\ntrain: images/train\nval: images/train\n"
        f"names: [thing]\ndownload: {server.url}/mine.tar.gz\n"
    )
    data = load_data_config(project / "mine.yaml")
    assert data["path"] == tmp_path / "data" / "mine"
    assert (tmp_path / "data" / "mine" / "labels" / "train" / "a.txt").is_file()


UPSTREAM_SCRIPT = "download: |\n  from utils.general import download, Path\n  download(['https://x/y.zip'])\n"


@pytest.mark.parametrize(
    "name, hint",
    [
        ("mydata.yaml", "run it in a YOLOv5 checkout"),
        ("coco.yaml", "--data coco.yaml (the shipped yaml does the same steps"),
    ],
)
def test_a_yaml_whose_download_is_a_script_is_never_run(server, tmp_path, name, hint):
    project = tmp_path / "project"
    project.mkdir()
    marker = tmp_path / "ran"
    yaml_file = project / name
    yaml_file.write_text(
        f"path: ../data/x\ntrain: images\nval: images\nnames: [a]\n{UPSTREAM_SCRIPT}  open('{marker}', 'w')\n"
    )
    with pytest.raises(UserError) as e:
        load_data_config(yaml_file)
    message = str(e.value)
    assert "'download:' is a Python script, which yolo_ray never runs" in message and hint in message
    assert f"check_dataset('{yaml_file}')" in message and "\n" not in message
    assert not marker.exists() and not (tmp_path / "data").exists()
