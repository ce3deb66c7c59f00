"""PASCAL VOC to YOLO: the conversion step of upstream's VOC.yaml, done in package code.

Each image set (train/val 2007 and 2012, test 2007) listed under VOCdevkit/VOC<year>/ImageSets/Main
gets its own images/<set><year> folder (the JPEGs are moved there) and labels/<set><year> folder of
YOLO rows converted from the XML annotations. As upstream: objects marked difficult are left out,
and boxes are centred one pixel up and left of the XML's (the VOC pixel origin is 1).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tqdm import tqdm

from yolo_ray.config import UserError

VOC_SETS = (("2012", "train"), ("2012", "val"), ("2007", "train"), ("2007", "val"), ("2007", "test"))


def convert_voc(root: Path, names: list[str]) -> None:
    """Lay out root/images/VOCdevkit (the unpacked archives) as YOLO image and label folders under root."""
    devkit = root / "images" / "VOCdevkit"
    for year, image_set in VOC_SETS:
        ids_file = devkit / f"VOC{year}" / "ImageSets" / "Main" / f"{image_set}.txt"
        if not ids_file.is_file():
            raise UserError(f"{ids_file}: missing from the VOC archives; the download is incomplete")
        images, labels = root / "images" / f"{image_set}{year}", root / "labels" / f"{image_set}{year}"
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for image_id in tqdm(ids_file.read_text().split(), desc=f"{image_set}{year}"):
            xml_file = devkit / f"VOC{year}" / "Annotations" / f"{image_id}.xml"
            (labels / f"{image_id}.txt").write_text("".join(f"{row}\n" for row in voc_rows(xml_file, names)))
            jpeg = devkit / f"VOC{year}" / "JPEGImages" / f"{image_id}.jpg"
            if jpeg.exists():  # already moved when an interrupted conversion runs again
                jpeg.rename(images / jpeg.name)


def voc_rows(xml_file: Path, names: list[str]) -> list[str]:
    """The YOLO label rows ('class x y w h', normalised) of one VOC annotation file."""
    try:
        tree = ET.parse(xml_file)
    except (OSError, ET.ParseError) as e:
        raise UserError(f"{xml_file}: not a readable VOC annotation ({e})") from None
    size = tree.getroot().find("size")
    w, h = int(size.find("width").text), int(size.find("height").text)
    rows = []
    for obj in tree.getroot().iter("object"):
        name = obj.find("name").text
        difficult = obj.find("difficult")
        if name not in names or (difficult is not None and int(difficult.text) == 1):
            continue
        box = obj.find("bndbox")
        xmin, xmax, ymin, ymax = (float(box.find(k).text) for k in ("xmin", "xmax", "ymin", "ymax"))
        x, y = (xmin + xmax) / 2.0 - 1, (ymin + ymax) / 2.0 - 1
        values = (names.index(name), x / w, y / h, (xmax - xmin) / w, (ymax - ymin) / h)
        rows.append(" ".join(str(v) for v in values))
    return rows
