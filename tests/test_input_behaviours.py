"""The behaviours behind some rows of the malformed-input table, one level down: which folder a bare
--resume takes, --imgsz rounding, AutoAnchor with nothing to fit, and the warnings for options a run
does not read."""

from __future__ import annotations

import os

import pytest
import torch
from malformed_world import evolve_csv_text, write


# ---- the behaviours behind some rows, one level down


@pytest.mark.timeout(20)
def test_bare_evolve_resume_takes_the_newest_folder_with_a_row(tmp_path):
    from yolo_ray.evolution.run_options import find_resume_dir

    hyp = {"lr0": 0.01, "momentum": 0.9}
    write(tmp_path / "exp" / "evolve.csv", evolve_csv_text(1, hyp))
    write(tmp_path / "exp" / "opt.yaml", "generations: 5\nsearch_space: yolov5\n")
    for stub, text in [("exp2", None), ("exp3", evolve_csv_text(0, hyp))]:  # later starts with no row
        write(tmp_path / stub / "opt.yaml", "generations: 5\nsearch_space: yolov5\n")
        if text:
            write(tmp_path / stub / "evolve.csv", text)
        os.utime(tmp_path / stub, (2e9, 2e9))
    assert find_resume_dir(True, tmp_path) == tmp_path / "exp"
    assert find_resume_dir(str(tmp_path / "exp" / "evolve.csv"), tmp_path) == tmp_path / "exp"
    assert find_resume_dir(str(tmp_path / "exp2"), tmp_path) == tmp_path / "exp2"  # named: an evolution, no row


@pytest.mark.timeout(60)
def test_evolve_rounds_imgsz_up_to_the_stride_like_train(tmp_path, capsys):
    from yolo_ray.data.synthetic import make_dataset
    from yolo_ray.evolution.run_options import resolve_options

    data = make_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    opt = resolve_options({"imgsz": 31, "project": str(tmp_path / "runs"), "cfg": "yolov5n.yaml", "data": str(data)})
    assert opt["imgsz"] == 64
    assert opt["save_dir"] is None and not (tmp_path / "runs").exists()  # the folder comes once Ray placed the run
    assert "WARNING: --img-size 31 must be multiple of max stride 32, updating to 64" in capsys.readouterr().out


@pytest.mark.timeout(30)
def test_autoanchor_keeps_the_anchors_when_there_is_nothing_to_fit(capsys):
    import numpy as np

    from yolo_ray.models import build_model
    from yolo_ray.training.autoanchor import check_anchors

    detect = build_model("yolov5n.yaml").model[-1]
    anchors = detect.anchors.clone()
    shapes = np.array([[64, 48], [64, 64]], dtype=np.float64)
    no_labels = [np.zeros((0, 5), dtype=np.float32)] * 2
    assert check_anchors(detect, shapes, no_labels, imgsz=64, rng=np.random.default_rng(0)) is False
    assert torch.equal(detect.anchors, anchors)
    assert "keeping the model's anchors" in capsys.readouterr().out


@pytest.mark.timeout(20)
def test_resume_takes_a_run_folder_and_its_own_checkpoint(tmp_path):
    from yolo_ray.training.rundir import resume_checkpoint

    last = tmp_path / "exp" / "weights" / "last.pt"
    write(tmp_path / "exp" / "opt.yaml", "epochs: 3\n")
    last.parent.mkdir()
    torch.save({"epoch": 1}, last)
    assert resume_checkpoint(tmp_path / "exp") == last
    assert resume_checkpoint(last) == last


@pytest.mark.timeout(60)
def test_options_the_strategy_does_not_read_are_named_in_one_warning(tmp_path, capsys):
    from yolo_ray.data.synthetic import make_dataset
    from yolo_ray.evolution.run_options import resolve_options

    data = make_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    base = {"project": str(tmp_path / "runs"), "cfg": "yolov5n.yaml", "data": str(data), "imgsz": 64}
    resolve_options({**base, "population": 20})
    resolve_options({**base, "strategy": "random", "parent": "weighted"})
    resolve_options({**base, "strategy": "population", "population": 20})  # read: no warning
    warnings = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
    assert warnings == [
        "WARNING: --population 20 has no effect with --strategy classic (only --strategy population reads it)",
        "WARNING: --parent weighted has no effect with --strategy random (only --strategy classic reads it)",
    ]


@pytest.mark.timeout(60)
def test_options_a_resume_overrides_with_the_runs_own_are_named_in_one_warning(tmp_path, capsys, monkeypatch):
    import yaml

    from yolo_ray.config import DEFAULT_HYP, load_hyp
    from yolo_ray.data.synthetic import make_dataset
    from yolo_ray.evolution.run_options import resolve_options

    data = make_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    run = tmp_path / "runs" / "exp"
    write(run / "evolve.csv", evolve_csv_text(2, load_hyp(DEFAULT_HYP)))
    saved = {"generations": 5, "search_space": "yolov5", "strategy": "classic", "data": str(data), "imgsz": 64}
    write(run / "opt.yaml", yaml.safe_dump({**saved, "cfg": "yolov5n.yaml"}))
    monkeypatch.chdir(data.parent)  # --data given relative: the same file as the absolute path in opt.yaml
    opt = resolve_options({"resume": str(run), "strategy": "random", "imgsz": 128, "data": data.name, "generations": 8})
    assert (opt["strategy"], opt["imgsz"], opt["generations"]) == ("classic", 64, 8)
    warnings = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
    assert warnings == [
        "WARNING: --resume continues with the run's own options (its opt.yaml); ignored: "
        "--imgsz 128 (the run's: 64), --strategy random (the run's: classic)"
    ]
