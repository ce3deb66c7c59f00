"""What a file given in the wrong place really is, from its first bytes: so an ONNX model passed as a .pt
checkpoint is named an ONNX model in the error, not "not a readable PyTorch checkpoint (8)"."""

from __future__ import annotations

import zipfile
from pathlib import Path

from yolo_ray.config import UserError, refuse_folder

# Leading bytes of image formats a user may pass by mistake (and the name an error gives them).
IMAGE_MAGIC = {
    b"\xff\xd8\xff": "a JPEG image",
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
}
HEAD_BYTES = 512


def sniff(path: str | Path) -> str | None:
    """'a folder', 'an ONNX model', 'a TorchScript model', 'a PyTorch checkpoint', an image kind, 'a zip
    archive', 'an OpenVINO model (.xml)' or 'a YAML or text file' from the content; None when unknown."""
    path = Path(path)
    if path.is_dir():
        return "a folder"
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return None
    if zipfile.is_zipfile(path):
        return _zip_kind(path)
    for magic, kind in IMAGE_MAGIC.items():
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    # ONNX ModelProto: field 1 ir_version (a one-byte varint), then field 2 producer_name or a graph
    if len(head) > 3 and head[0] == 0x08 and head[1] < 0x80 and head[2] in (0x12, 0x3A):
        return "an ONNX model"
    if head.lstrip().startswith(b"<?xml") and b"<net" in head:
        return "an OpenVINO model (.xml)"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= 5:
        return "a PyTorch checkpoint"  # a pickle: torch's legacy (non-zip) format
    if head and b"\x00" not in head and _is_text(head):
        return "a YAML or text file"
    return None


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return "a zip archive"
    if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
        return "a TorchScript model"
    if any(n.endswith("/data.pkl") for n in names):
        return "a PyTorch checkpoint"
    return "a zip archive"


def _is_text(head: bytes) -> bool:
    try:  # the head may end inside a multi-byte character
        head[: len(head) - 3 if len(head) == HEAD_BYTES else None].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def require_file(path: str | Path, noun: str) -> Path:
    """path when it is an existing file; a UserError naming it a folder, or not found, otherwise.
    noun: what the file should be ('weights file'), as the error names it."""
    path = Path(path)
    refuse_folder(path, f"a {noun}")
    if not path.is_file():
        raise UserError(f"{path}: {noun} not found")
    return path


def refuse_other_kind(path: str | Path, expected: str, accepted: tuple[str | None, ...]) -> None:
    """A UserError 'PATH: is an ONNX model, expected EXPECTED' when the content is a known kind not accepted."""
    kind = sniff(path)
    if kind not in accepted:
        raise UserError(f"{path}: is {kind}, expected {expected}")
