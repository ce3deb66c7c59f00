"""What stands behind some rows of the entry points' malformed-input table (test_malformed_entry_points.py),
one level down: export writes all its formats or none (a late refusal, a full disk, a missing package),
yolo_ray.load keeps a URL whole, and a failed val/detect run removes only the folders it created."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from malformed_world import save_untrained_checkpoint, snapshot

import yolo_ray
from yolo_ray.commands import export as export_command

NAMES = {0: "circle", 1: "square", 2: "triangle", 3: "cross"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_untrained_checkpoint(tmp_path_factory.mktemp("weights") / "best.pt", NAMES)


def export_folder(checkpoint: Path, tmp_path: Path) -> Path:
    """A folder holding a copy of the checkpoint and an older export of it."""
    shutil.copy(checkpoint, tmp_path / "best.pt")
    (tmp_path / "best.torchscript").write_bytes(b"an older export")
    return tmp_path


@pytest.mark.timeout(120)
def test_an_export_failing_late_removes_what_it_wrote_and_keeps_older_exports(
    checkpoint, tmp_path, monkeypatch, capsys
):
    import yolo_ray.infer.export as export

    def refuse(*args, **kwargs):
        raise yolo_ray.UserError("--opset 12: the ONNX exporter refused it (as a real refusal would)")

    folder = export_folder(checkpoint, tmp_path)
    before = snapshot(folder)
    monkeypatch.setattr(export, "export_onnx", refuse)  # after yolov5 and torchscript were written
    argv = ["--weights", str(folder / "best.pt"), "--include", "yolov5", "torchscript", "onnx", "--imgsz", "64"]
    assert export_command.main(argv) == 2
    assert capsys.readouterr().err == "error: --opset 12: the ONNX exporter refused it (as a real refusal would)\n"
    assert snapshot(folder) == before  # no best-yolov5.pt, no hidden temp file, the older export untouched


@pytest.mark.timeout(120)
def test_a_full_disk_during_an_export_is_one_line_and_leaves_no_part_file(checkpoint, tmp_path, monkeypatch, capsys):
    import errno

    import yolo_ray.infer.export as export

    def disk_full(model, im, file):
        file.write_bytes(b"the first megabyte of a TorchScript file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    folder = export_folder(checkpoint, tmp_path)
    before = snapshot(folder)
    monkeypatch.setattr(export, "export_torchscript", disk_full)
    argv = ["--weights", str(folder / "best.pt"), "--include", "yolov5", "torchscript", "--imgsz", "64"]
    assert export_command.main(argv) == 2
    assert capsys.readouterr().err == f"error: {folder}: cannot write the export there (No space left on device)\n"
    assert snapshot(folder) == before


@pytest.mark.timeout(120)
def test_an_export_writes_every_format_at_once_without_temp_files(checkpoint, tmp_path):
    folder = export_folder(checkpoint, tmp_path)
    argv = ["--weights", str(folder / "best.pt"), "--include", "yolov5", "torchscript", "--imgsz", "64"]
    assert export_command.main(argv) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["best-yolov5.pt", "best.pt", "best.torchscript"]
    assert (folder / "best.torchscript").stat().st_size > 1e6  # the new export replaced the older one
    assert yolo_ray.load(folder / "best-yolov5.pt", device="cpu").nc == 4


@pytest.mark.timeout(60)
def test_an_export_without_the_onnx_package_says_so_before_writing(checkpoint, tmp_path, monkeypatch, capsys):
    import yolo_ray.infer.formats as formats

    real_find_spec = formats.importlib.util.find_spec
    monkeypatch.setattr(
        formats.importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real_find_spec(name, *a)
    )
    folder = export_folder(checkpoint, tmp_path)
    before = snapshot(folder)
    assert export_command.main(["--weights", str(folder / "best.pt"), "--include", "yolov5", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --include yolov5 onnx needs the onnx package: pip install 'yolo_ray[export]'\n"
    assert snapshot(folder) == before


@pytest.mark.timeout(120)
def test_load_downloads_a_url_whole_and_names_it_whole_when_it_cannot(checkpoint, tmp_path, monkeypatch):
    from asset_server import AssetServer

    monkeypatch.setenv("YOLO_RAY_HOME", str(tmp_path / "home"))
    server = AssetServer()
    try:
        url = server.add_file(checkpoint)
        model = yolo_ray.load(url, device="cpu")
        assert model.nc == 4 and server.requests["best.pt"] == 1
        assert yolo_ray.load(url, device="cpu").nc == 4 and server.requests["best.pt"] == 1  # cached
        assert len(list((tmp_path / "home" / "weights" / "urls").glob("*/best.pt"))) == 1
        with pytest.raises(yolo_ray.UserError, match=f"cannot download {server.url}/missing.pt "):
            yolo_ray.load(f"{server.url}/missing.pt", device="cpu")
    finally:
        server.close()


def test_a_failed_run_removes_only_the_folders_it_created(tmp_path):
    from yolo_ray.cli import new_run_dir

    for project, name, exist_ok in [(tmp_path / "a" / "b", "exp", False), (tmp_path, "exp", False)]:
        with pytest.raises(yolo_ray.UserError), new_run_dir(str(project), name, exist_ok) as save_dir:
            (save_dir / "labels").mkdir()
            raise yolo_ray.UserError("a source turned out unreadable")
        assert not (tmp_path / "a").exists() and not (tmp_path / "exp").exists()
    (tmp_path / "exp").mkdir()
    with pytest.raises(yolo_ray.UserError), new_run_dir(str(tmp_path), "exp", False) as save_dir:
        raise yolo_ray.UserError("again")
    assert save_dir.name == "exp2" and sorted(p.name for p in tmp_path.iterdir()) == ["exp"]
    with pytest.raises(yolo_ray.UserError), new_run_dir(str(tmp_path), "exp", True) as save_dir:
        raise yolo_ray.UserError("into an existing folder (--exist-ok)")
    assert save_dir == tmp_path / "exp" and save_dir.is_dir()  # not ours to remove
