"""What the inference tests share: one short real training run per session, and the scripts as modules.

The run is cached here (not in a fixture of one module) so test_val, test_detect_api and test_export
train it once between them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMGSZ = 96  # the synthetic images' own size: no resizing, fast on 2 cores
EPOCHS = 6
TRAIN_BATCH = 8  # validation during training used batches of 2 x this


@dataclass(frozen=True)
class TrainedRun:
    data: Path  # data yaml
    save_dir: Path
    log: str  # what training printed

    @property
    def last(self) -> Path:
        return self.save_dir / "weights" / "last.pt"

    @property
    def early(self) -> Path:
        return self.save_dir / "weights" / "epoch0.pt"

    @property
    def val_images(self) -> list[Path]:
        return sorted((self.data.parent / "images" / "val").glob("*.jpg"))


_RUNS: dict[str, TrainedRun] = {}


def trained_run(tmp_path_factory) -> TrainedRun:
    """yolov5n trained for a few epochs on a small synthetic set, with plots and per-epoch checkpoints."""
    if "run" not in _RUNS:
        import torch

        from yolo_ray.config import DEFAULT_HYP, load_hyp
        from yolo_ray.data.synthetic import make_dataset
        from yolo_ray.training import train_loop_per_worker

        root = tmp_path_factory.mktemp("infer")
        data = make_dataset(root / "data", seed=1, n_train=64, n_val=16, size=IMGSZ)
        hyp = load_hyp(DEFAULT_HYP)
        hyp["mosaic"], hyp["warmup_epochs"] = 0.0, 1.0  # plain images, short warmup: a signal in few epochs
        config = {
            "cfg": "yolov5n.yaml",
            "data": str(data),
            "hyp": hyp,
            "epochs": EPOCHS,
            "batch_size": TRAIN_BATCH,
            "imgsz": IMGSZ,
            "workers": 0,
            "device": "cpu",
            "save_dir": str(root / "run"),
            "seed": 0,
            "noautoanchor": True,
            "save_period": 1,
        }
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                train_loop_per_worker(config)
        finally:
            torch.set_num_threads(threads)
        _RUNS["run"] = TrainedRun(data, root / "run", log.getvalue())
    return _RUNS["run"]


def load_script(name: str):
    """scripts/<name>.py as a module, so tests call its main() in this process."""
    spec = importlib.util.spec_from_file_location(f"{name}_cli", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def last_results_row(save_dir: Path) -> dict[str, float]:
    lines = (save_dir / "results.csv").read_text().splitlines()
    keys = [k.strip() for k in lines[0].split(",")]
    return dict(zip(keys, (float(v) for v in lines[-1].split(","))))


@contextlib.contextmanager
def serve_folder(folder: Path):
    """An HTTP server on 127.0.0.1 (a free port) serving `folder` from a thread; yields its base URL."""
    import functools
    import http.server
    import threading

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
