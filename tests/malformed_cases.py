"""The malformed-input table's rows for scripts/train.py and scripts/evolve.py: each a bad file, label,
option or state as a new user would type it, and what its one error (or warning) line must say.
tests/test_malformed_inputs.py runs them; tests/malformed_world.py builds the files they name."""

from __future__ import annotations

from dataclasses import dataclass

# What every case starts from; a case's own arguments come after and override these.
BASE_ARGS = {
    "train": [
        "--cfg",
        "yolov5n.yaml",
        "--data",
        "{w}/good/data.yaml",
        "--imgsz",
        "64",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--epochs",
        "1",
        "--noautoanchor",
        "--noplots",
        "--project",
        "{w}/runs/train",
    ],
    "evolve": [
        "--data",
        "{w}/good/data.yaml",
        "--imgsz",
        "64",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--epochs",
        "1",
        "--generations",
        "2",
        "--project",
        "{w}/runs/evolve",
    ],
}


@dataclass(frozen=True)
class Case:
    id: str
    script: str  # "train" or "evolve"
    args: tuple[str, ...]  # "{w}" is the world folder
    expected: str  # in the error (or warning) line: names the file or option, and the problem
    warns: bool = False  # training goes on (exit 0) with one WARNING line instead of an error


def both(id_: str, args: list[str], expected: str) -> list[Case]:
    return [Case(f"{script}-{id_}", script, tuple(args), expected) for script in ("train", "evolve")]


def train(id_: str, args: list[str], expected: str, warns: bool = False) -> list[Case]:
    return [Case(f"train-{id_}", "train", tuple(args), expected, warns)]


def evolve(id_: str, args: list[str], expected: str) -> list[Case]:
    return [Case(f"evolve-{id_}", "evolve", tuple(args), expected)]


F = "{w}/files"
CASES: list[Case] = [
    # ---- the data yaml
    *both("data-missing", ["--data", f"{F}/missing.yaml"], "missing.yaml: file not found"),
    *both("data-is-a-folder", ["--data", "{w}/good"], "good: is a folder, expected a YAML file"),
    *both("data-invalid-yaml", ["--data", f"{F}/invalid.yaml"], "invalid.yaml: not valid YAML"),
    *train("data-a-list", ["--data", f"{F}/list.yaml"], "list.yaml: expected a YAML mapping, got list"),
    *train("data-empty-file", ["--data", f"{F}/empty.yaml"], "empty.yaml: expected a YAML mapping"),
    *train("data-binary", ["--data", f"{F}/binary.yaml"], "binary.yaml: "),
    *train("data-no-train", ["--data", f"{F}/data_no_train.yaml"], "data_no_train.yaml: 'train' is missing"),
    *train(
        "data-train-not-found",
        ["--data", f"{F}/data_train_missing.yaml"],
        "data_train_missing.yaml: train images not found",
    ),
    *train(
        "data-val-not-found", ["--data", f"{F}/data_val_missing.yaml"], "data_val_missing.yaml: val images not found"
    ),
    *train("data-no-names", ["--data", f"{F}/data_no_names.yaml"], "data_no_names.yaml: needs 'names'"),
    *train("data-names-gap", ["--data", f"{F}/data_names_gap.yaml"], "data_names_gap.yaml: 'names' ids must be"),
    *train("data-nc-mismatch", ["--data", f"{F}/data_nc_mismatch.yaml"], "nc=3 but 'names' has 4 entries"),
    *train("data-nc-negative", ["--data", f"{F}/data_nc_negative.yaml"], "'nc' must be a positive integer"),
    *train("data-path-not-str", ["--data", f"{F}/data_path_number.yaml"], "'path' must be a folder path"),
    *both("data-no-images", ["--data", "{w}/noimages/data.yaml"], "no images found"),
    # ---- labels: nothing usable is an error; a few percent missing is a counted warning
    *both(
        "labels-all-missing",
        ["--data", "{w}/labels_missing/data.yaml"],
        "No labels found in {w}/labels_missing/labels/train, can not start training (16 images: 0 label files "
        "found, 16 missing",
    ),
    *both("labels-all-malformed", ["--data", "{w}/labels_malformed/data.yaml"], "can not start training"),
    *train("labels-pixel-coordinates", ["--data", "{w}/labels_pixels/data.yaml"], "can not start training"),
    *train("labels-nan", ["--data", "{w}/labels_nan/data.yaml"], "can not start training"),
    *train("labels-negative", ["--data", "{w}/labels_negative/data.yaml"], "can not start training"),
    *train(
        "labels-all-empty",
        ["--data", "{w}/labels_empty/data.yaml"],
        "No labels found in {w}/labels_empty/labels/train, can not start training (16 images: 16 label files "
        "found, 0 missing, 16 empty",
    ),
    *both("labels-class-above-nc", ["--data", "{w}/labels_class/data.yaml"], "has class 7 but the data has nc=4"),
    *train(
        "images-all-corrupt",
        ["--data", "{w}/images_corrupt/data.yaml"],
        "No usable images in {w}/images_corrupt/images/train, can not start training (16 images",
    ),
    *train(
        "labels-some-missing",
        ["--data", "{w}/labels_some_missing/data.yaml"],
        "4 of 16 images have no label file and train as background",
        warns=True,
    ),
    *train(
        "labels-some-pixel-rows",
        ["--data", "{w}/labels_some_pixels/data.yaml"],
        "WARNING: train: {w}/labels_some_pixels/labels/train: ",
        warns=True,
    ),
    # ---- weights and model cfg
    *both("weights-missing", ["--weights", f"{F}/yolov5s.pt"], "yolov5s.pt: weights file not found"),
    *both("weights-random-bytes", ["--weights", f"{F}/random.pt"], "random.pt: not a readable PyTorch checkpoint"),
    *both("weights-malicious", ["--weights", f"{F}/malicious.pt"], "malicious.pt: refused to load"),
    *train("weights-malicious-zip", ["--weights", f"{F}/malicious_zip.pt"], "malicious_zip.pt: refused to load"),
    *train("weights-text", ["--weights", f"{F}/text.pt"], "text.pt: not a readable PyTorch checkpoint"),
    *train("weights-a-list", ["--weights", f"{F}/list.pt"], "list.pt: expected a checkpoint dict"),
    *train("weights-no-model", ["--weights", f"{F}/no_model.pt"], "no_model.pt: no model weights"),
    *both(
        "weights-without-yaml",
        ["--weights", f"{F}/state_dict.pt", "--cfg", ""],
        "state_dict.pt: checkpoint holds no model yaml; pass --cfg as well",
    ),
    *both("cfg-unknown", ["--cfg", "yolov9q.yaml"], "yolov9q.yaml: model yaml not found"),
    *both("cfg-invalid-yaml", ["--cfg", f"{F}/invalid.yaml"], "invalid.yaml: not valid YAML"),
    *train("cfg-unknown-module", ["--cfg", f"{F}/cfg_module.yaml"], "cfg_module.yaml: layer 0 module 'Focus2'"),
    *train("cfg-no-anchors", ["--cfg", f"{F}/cfg_no_anchors.yaml"], "cfg_no_anchors.yaml: missing key 'anchors'"),
    # ---- hyperparameters: present, numbers, finite, inside their valid range
    *both("hyp-missing", ["--hyp", f"{F}/hyp_missing.yaml"], "hyp_missing.yaml: file not found"),
    *both(
        "hyp-lr0-nan",
        ["--hyp", f"{F}/hyp_lr0_nan.yaml"],
        "hyp_lr0_nan.yaml: hyperparameter lr0 = nan is not a finite number",
    ),
    *both(
        "hyp-lr0-negative",
        ["--hyp", f"{F}/hyp_lr0_neg.yaml"],
        "hyp_lr0_neg.yaml: hyperparameter lr0 = -0.01 is out of range (valid: (0, inf))",
    ),
    *train("hyp-momentum-1", ["--hyp", f"{F}/hyp_momentum_1.yaml"], "momentum = 1 is out of range (valid: [0, 1))"),
    *train("hyp-mosaic-1.5", ["--hyp", f"{F}/hyp_mosaic.yaml"], "mosaic = 1.5 is out of range (valid: [0, 1])"),
    *train("hyp-fliplr-negative", ["--hyp", f"{F}/hyp_fliplr.yaml"], "fliplr = -0.5 is out of range"),
    *train("hyp-scale-1", ["--hyp", f"{F}/hyp_scale.yaml"], "scale = 1 is out of range (valid: [0, 1))"),
    *train("hyp-weight-decay-negative", ["--hyp", f"{F}/hyp_wd.yaml"], "weight_decay = -0.0001 is out of range"),
    *evolve("hyp-hsv-inf", ["--hyp", f"{F}/hyp_hsv_inf.yaml"], "hsv_h = inf is not a finite number"),
    *evolve("hyp-anchor-t-below-1", ["--hyp", f"{F}/hyp_anchor_t.yaml"], "anchor_t = 0.5 is out of range"),
    *train("hyp-missing-keys", ["--hyp", f"{F}/hyp_partial.yaml"], "hyp_partial.yaml: missing hyperparameters lrf"),
    *train("hyp-not-a-number", ["--hyp", f"{F}/hyp_text.yaml"], "hyperparameter 'lr0' must be a number, got 'fast'"),
    *train("hyp-a-list", ["--hyp", f"{F}/list.yaml"], "list.yaml: expected a YAML mapping"),
    # ---- numbers and choices
    *both("epochs-0", ["--epochs", "0"], "--epochs 0 is out of range (valid: [1, inf))"),
    *both("workers-negative", ["--workers", "-1"], "--workers -1 is out of range (valid: [0, inf))"),
    *both("batch-size-0", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    *both(
        "batch-split",
        ["--batch-size", "6", "--ray-workers", "4"],
        "--batch-size 6 must be a multiple of --ray-workers 4",
    ),
    *both("imgsz-0", ["--imgsz", "0"], "--imgsz 0 is out of range (valid: [1, inf))"),
    *both("label-smoothing-1.5", ["--label-smoothing", "1.5"], "--label-smoothing 1.5 is out of range (valid: [0, 1))"),
    *both("freeze-negative", ["--freeze", "-1"], "--freeze -1 is out of range"),
    *both("seed-negative", ["--seed", "-5"], "--seed -5 is out of range"),
    *both("ray-workers-0", ["--ray-workers", "0"], "--ray-workers must be at least 1, got 0"),
    *both("image-weights-ddp", ["--image-weights", "--ray-workers", "2"], "--image-weights is not compatible"),
    *both("epochs-not-int", ["--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
    *both("cache-choice", ["--cache", "gpu"], "argument --cache: invalid choice: 'gpu'"),
    *both("unknown-option", ["--bogus"], "unrecognized arguments: --bogus"),
    *train("optimizer-choice", ["--optimizer", "RMSProp"], "argument --optimizer: invalid choice: 'RMSProp'"),
    *train("patience-negative", ["--patience", "-1"], "--patience -1 is out of range"),
    *train("cpus-per-worker-negative", ["--cpus-per-worker", "-2"], "--cpus-per-worker -2 is out of range"),
    *train("device-absent-gpu", ["--device", "7"], "--device '7': CUDA device 7 is not available"),
    *train("device-garbage", ["--device", "gpu0"], "--device 'gpu0': expected '', 'cpu' or CUDA indices"),
    *train(
        "imgsz-31-rounds-up",
        ["--imgsz", "31"],
        "WARNING: --img-size 31 must be multiple of max stride 32, updating to 64",
        warns=True,
    ),
    *evolve("generations-0", ["--generations", "0"], "--generations 0 is out of range (valid: [1, inf))"),
    *evolve("concurrency-0", ["--concurrency", "0"], "--concurrency 0 is out of range"),
    *evolve("cpus-per-trial-0", ["--cpus-per-trial", "0"], "--cpus-per-trial 0 is out of range (valid: (0, inf))"),
    *evolve("gpus-per-trial-negative", ["--gpus-per-trial", "-1"], "--gpus-per-trial -1 is out of range"),
    *evolve("max-retries-negative", ["--max-retries", "-1"], "--max-retries -1 is out of range"),
    *evolve("max-failed-trials-0", ["--max-failed-trials", "0"], "--max-failed-trials 0 is out of range"),
    *evolve("parent-choice", ["--parent", "best"], "argument --parent: invalid choice: 'best'"),
    # ---- search spaces
    *evolve(
        "space-missing", ["--search-space", f"{F}/space_missing.yaml"], "space_missing.yaml: search space not found"
    ),
    *evolve("space-invalid-yaml", ["--search-space", f"{F}/invalid.yaml"], "invalid.yaml: not valid YAML"),
    *evolve("space-unknown-key", ["--search-space", f"{F}/space_key.yaml"], "'lr9' is not a YOLOv5 hyperparameter"),
    *evolve("space-not-a-triple", ["--search-space", f"{F}/space_pair.yaml"], "lr0: expected [gain, low, high]"),
    *evolve("space-low-above-high", ["--search-space", f"{F}/space_order.yaml"], "lr0: low 0.1 > high 0.001"),
    *evolve("space-nan", ["--search-space", f"{F}/space_nan.yaml"], "lr0: NaN in"),
    *evolve("space-negative-gain", ["--search-space", f"{F}/space_gain.yaml"], "lr0: gain must be >= 0"),
    *evolve("space-no-gain", ["--search-space", f"{F}/space_frozen.yaml"], "no key has a gain > 0"),
    *evolve("space-not-numbers", ["--search-space", f"{F}/space_text.yaml"], "lr0: [gain, low, high] must be numbers"),
    *evolve(
        "space-invalid-limit",
        ["--search-space", f"{F}/space_limit.yaml"],
        "limit momentum = 1.2 is out of range (valid: [0, 1))",
    ),
    # ---- --project that cannot hold a run
    *both("project-is-a-file", ["--project", f"{F}/empty.yaml"], "empty.yaml is not a folder"),
    *both("project-under-a-file", ["--project", f"{F}/empty.yaml/runs"], "empty.yaml is not a folder"),
    *both("project-read-only", ["--project", "{w}/readonly/runs"], "{w}/readonly is not writable"),
    *both("name-empty", ["--name", ""], "--name '': expected a folder name inside --project"),
    # ---- evolve --resume of what is not a (readable) evolution
    *evolve("resume-missing-dir", ["--resume", "{w}/runs/evolve/nope"], "nope: --resume directory not found"),
    *evolve(
        "resume-empty-folder",
        ["--resume", "{w}/runs/evolve/empty"],
        "empty: --resume folder is not an evolution (no evolve.csv)",
    ),
    *evolve(
        "resume-training-run",
        ["--resume", "{w}/runs/train/exp"],
        "{w}/runs/train/exp: --resume folder is not an evolution",
    ),
    *evolve(
        "resume-bare-only-stubs",
        ["--resume", "--project", "{w}/runs/stubs"],
        "{w}/runs/stubs: no evolution to resume (no run folder whose evolve.csv holds a row)",
    ),
    *evolve("resume-bare-nothing", ["--resume", "--project", "{w}/runs/none"], "no evolution to resume"),
    *evolve(
        "resume-csv-file-bad-last-line",
        ["--resume", "{w}/runs/evolve/short_last/evolve.csv"],
        "short_last/evolve.csv, line 4: expected 36 comma-separated values",
    ),
    *evolve(
        "resume-csv-bad-header",
        ["--resume", "{w}/runs/evolve/bad_header"],
        "bad_header/evolve.csv: header must start with the result columns",
    ),
    *evolve(
        "resume-csv-not-numbers",
        ["--resume", "{w}/runs/evolve/not_numbers"],
        "not_numbers/evolve.csv, line 2: values must be numbers",
    ),
    *evolve(
        "resume-csv-other-columns",
        ["--resume", "{w}/runs/evolve/other_columns"],
        "other_columns/evolve.csv: its hyperparameter columns do not match",
    ),
    *evolve("resume-opt-invalid-yaml", ["--resume", "{w}/runs/evolve/bad_opt"], "bad_opt/opt.yaml: not valid YAML"),
    *evolve("resume-opt-data-gone", ["--resume", "{w}/runs/evolve/data_gone"], "gone.yaml: file not found"),
    *evolve("resume-read-only", ["--resume", "{w}/readonly/evolution"], "evolution: --resume folder is not writable"),
    # ---- train --resume of what is not a checkpoint
    *train("resume-bare-nothing", ["--resume", "--project", "{w}/runs/none"], "no last.pt found to resume"),
    *train("resume-missing", ["--resume", f"{F}/last.pt"], "last.pt: --resume checkpoint not found"),
    *train(
        "resume-random-bytes",
        ["--resume", "{w}/runs/train/torn/weights/last.pt"],
        "last.pt: not a readable yolo_ray training checkpoint",
    ),
    *train(
        "resume-random-bytes-run-folder",
        ["--resume", "{w}/runs/train/torn"],
        "last.pt: not a readable yolo_ray training checkpoint",
    ),
    *train(
        "resume-copy-inside-another-run",
        ["--resume", "{w}/runs/train/exp/backup/last.pt"],
        "backup/last.pt: --resume checkpoint is not in a run folder",
    ),
    *train(
        "resume-lone-checkpoint",
        ["--resume", "{w}/runs/train/lone/last.pt"],
        "lone/last.pt: --resume checkpoint is not in a run folder",
    ),
    *train(
        "resume-file-not-a-checkpoint-outside-run",
        ["--resume", f"{F}/random.pt"],
        "random.pt: --resume checkpoint is not in a run folder",
    ),
    *train(
        "resume-folder-without-weights",
        ["--resume", "{w}/runs/train/no_weights"],
        "no_weights: --resume folder holds no weights/last.pt",
    ),
    *train("resume-folder-not-a-run", ["--resume", "{w}/good"], "good: --resume folder holds no weights/last.pt"),
    # ---- evolve --device: trials on a new local cluster run here, so the device must exist here
    *evolve("device-absent-gpus", ["--device", "7,8"], "--device '7,8': CUDA device 7 is not available"),
    *evolve("device-garbage", ["--device", "banana"], "--device 'banana': expected '', 'cpu' or CUDA indices"),
    *evolve(
        "device-garbage-on-a-cluster",
        ["--device", "banana", "--address", "127.0.0.1:1"],
        "--device 'banana': expected '', 'cpu' or CUDA indices",
    ),
    *evolve("device-half-garbage", ["--device", "0,x"], "--device '0,x': expected '', 'cpu' or CUDA indices"),
    *train("device-half-garbage", ["--device", "0,x"], "--device '0,x': expected '', 'cpu' or CUDA indices"),
    # ---- folders where files go, files where folders go
    *both("hyp-is-a-folder", ["--hyp", "{w}/good"], "good: is a folder, expected a YAML file"),
    *both("cfg-is-a-folder", ["--cfg", "{w}/good"], "good: is a folder, expected a model YAML file"),
    *both("weights-is-a-folder", ["--weights", "{w}/good"], "good: is a folder, expected a weights file (.pt)"),
    *evolve(
        "space-is-a-folder", ["--search-space", "{w}/good"], "good: is a folder, expected a search space YAML file"
    ),
    *train("resume-a-yaml", ["--resume", f"{F}/invalid.yaml"], "invalid.yaml: --resume checkpoint is not in a run"),
    *evolve("resume-a-file", ["--resume", f"{F}/random.pt"], "files: --resume folder is not an evolution"),
    *evolve("tune-storage-is-a-file", ["--tune-storage", f"{F}/empty.yaml"], "empty.yaml is not a folder"),
    # ---- storage the run could never be kept in
    *both(
        "storage-read-only",
        ["--storage-path", "file://{w}/readonly/store"],
        "--storage-path file://{w}/readonly/store: {w}/readonly is not writable",
    ),
    *both(
        "storage-under-a-file",
        ["--storage-path", f"file://{F}/empty.yaml/store"],
        "--storage-path file://{w}/files/empty.yaml/store: {w}/files/empty.yaml is not a folder",
    ),
    *both(
        "storage-not-a-uri", ["--storage-path", "nosuch://bucket/runs"], "--storage-path nosuch://bucket/runs: not a"
    ),
    *evolve(
        "storage-unreachable-bucket",
        ["--storage-path", "s3://runs/evolve?endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1"],
        "cannot reach it",
    ),
    *evolve("tune-storage-read-only", ["--tune-storage", "{w}/readonly/tune"], "{w}/readonly is not writable"),
    *both(
        "resume-stored-read-only",
        ["--resume", "file://{w}/readonly/evolution"],
        "--resume file://{w}/readonly/evolution: {w}/readonly/evolution is not writable",
    ),
    *train("resume-stored-nothing", ["--resume", "file://{w}/runs/none/stored"], "no stored run there to resume"),
    *evolve("resume-stored-nothing", ["--resume", "file://{w}/runs/none/stored"], "no stored evolution there"),
    *evolve("bucket-and-storage", ["--bucket", "b", "--storage-path", "file://{w}/s"], "--bucket and --storage-path"),
    # ---- more numbers
    *both("epochs-negative", ["--epochs", "-3"], "--epochs -3 is out of range"),
    *both("batch-size-negative", ["--batch-size", "-8"], "--batch-size must be at least 1, got -8"),
    *both("imgsz-negative", ["--imgsz", "-64"], "--imgsz -64 is out of range"),
    *both("imgsz-not-int", ["--imgsz", "64.5"], "invalid int value: '64.5'"),
    *both("label-smoothing-nan", ["--label-smoothing", "nan"], "--label-smoothing nan is not a finite number"),
    *both("placement-timeout-0", ["--placement-timeout", "0"], "--placement-timeout 0 is out of range"),
    *both("seed-too-big", ["--seed", "4294967296"], "--seed 4294967296 is out of range"),
    *both("optimizer-lowercase", ["--optimizer", "sgd"], "argument --optimizer: invalid choice: 'sgd'"),
    *both("trackers-unknown", ["--trackers", "neptune"], "neptune"),
    *both("name-with-slash-up", ["--name", "../escape"], "--name '../escape': expected a folder name"),
    *train("max-failures-negative", ["--max-failures", "-1"], "--max-failures -1 is out of range"),
    *train("save-period-not-int", ["--save-period", "often"], "argument --save-period: invalid int value"),
    *train("gpus-per-worker-negative", ["--gpus-per-worker", "-1"], "--gpus-per-worker -1 is out of range"),
    *evolve("population-1", ["--strategy", "population", "--population", "1"], "--population 1"),
    *evolve("time-budget-garbage", ["--time-budget", "soon"], "--time-budget 'soon'"),
    *evolve("patience-rows-0", ["--patience-rows", "0"], "--patience-rows 0 is out of range"),
    *evolve("strategy-unknown", ["--strategy", "bayes"], "argument --strategy: invalid choice: 'bayes'"),
    *evolve("concurrency-not-int", ["--concurrency", "many"], "argument --concurrency: invalid int value"),
    *evolve("early-stop-population", ["--strategy", "population", "--early-stop"], "--early-stop cannot be used"),
    *train(
        "resume-bad-opt-yaml",
        ["--resume", "{w}/runs/train/bad_opt/weights/last.pt"],
        "bad_opt/opt.yaml: not valid YAML",
    ),
]
