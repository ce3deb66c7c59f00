"""What the commands share: the one-line error parser, options derived from the configs, the inference options."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from yolo_ray.config import UserError, write_refused
from yolo_ray.option_fields import config_fields, flag_of


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """--help names every default: '(default: 100)', '(default: none)' unless the help already says it
    ('default: ...' in words); switches (on/off flags) stay as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.nargs == 0 or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if "default" in text.lower():
            return text
        if action.default is None:
            default = "none"
        elif action.default == "":
            default = "''"
        elif action.default is False:
            default = "off"
        else:
            default = " ".join(map(str, action.default)) if isinstance(action.default, list) else "%(default)s"
        return f"{text} (default: {default})"


class OneLineParser(argparse.ArgumentParser):
    """Option errors surface as a UserError, so they print as one `error: ...` line like any other;
    --help shows every default (DefaultsHelpFormatter)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def add_config_options(group: argparse._ActionsContainer, config: type, *groups: str) -> None:
    """argparse options for the fields of a config class (options.TrainConfig, options.EvolveConfig) in
    `groups`: their flags, defaults, choices and help all come from the field."""
    defaults = config()
    for f in config_fields(config, groups):
        meta = f.metadata
        default = getattr(defaults, f.name)
        if meta["negated"]:
            group.add_argument(meta["negated"], dest=f.name, action="store_false", help=meta["help"])
            continue
        flags = meta["flags"] or (flag_of(f),)
        if isinstance(default, bool) and meta["nargs"] is None:
            group.add_argument(*flags, dest=f.name, action="store_true", help=meta["help"])
            continue
        kwargs: dict[str, Any] = dict(dest=f.name, default=default, help=meta["help"])
        if meta["kind"] in (int, float):
            kwargs["type"] = meta["kind"]
        for key in ("choices", "nargs", "const"):
            if meta[key] is not None:
                kwargs[key] = meta[key]
        group.add_argument(*flags, **kwargs)
        for old in meta["deprecated"]:  # kept under its old name: the config says once that it is old
            shape = {k: v for k, v in kwargs.items() if k not in ("dest", "default", "help")}
            group.add_argument(
                old,
                dest=old.lstrip("-").replace("-", "_"),
                default=argparse.SUPPRESS,
                help=f"old spelling of {flags[0]} (still works, with a deprecation line)",
                **shape,
            )


def run_script(body: Callable[[], int]) -> int:
    """body's exit status; a UserError anywhere in it is one `error: ...` line on stderr and status 2."""
    try:
        return body()
    except (UserError, OSError) as e:
        error = e if isinstance(e, UserError) else write_refused(e)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


def add_console_options(parser: argparse.ArgumentParser, verbose: bool = True) -> None:
    """--quiet (warnings and errors only) and --verbose (debug records, Ray's own INFO lines), as upstream's
    YOLOv5_VERBOSE; verbose=False where the script's --verbose already means something else (val.py)."""
    group = parser.add_argument_group("console")
    group.add_argument("--quiet", action="store_true", help="print warnings and errors only (as YOLOv5_VERBOSE=False)")
    if verbose:
        group.add_argument("--verbose", action="store_true", help="also print debug lines and Ray's own INFO lines")


def start_logging(opt: dict[str, Any]) -> None:
    """Configure logging once for a script from its --quiet/--verbose (taken out of opt)."""
    from yolo_ray.console import setup_logging, verbosity
    from yolo_ray.paths import settle_home_folders

    setup_logging(verbosity(opt.pop("quiet", False), opt.pop("verbose", False)))
    settle_home_folders()


def add_model_options(
    group: argparse._ActionsContainer,
    project: str | None,
    weights_help: str,
    device_default: str = "",
    half_help: str = "use FP16 half-precision inference",
) -> None:
    """What val.py, detect.py and export.py share: weights, device, and the run folder (unless project is None)."""
    group.add_argument("--weights", nargs="+", required=True, help=weights_help)
    group.add_argument("--device", default=device_default, help="'' (auto), cpu, or cuda device like 0")
    group.add_argument("--half", action="store_true", help=half_help)
    if project is None:
        return
    group.add_argument("--project", default=project, help="save to project/name")
    group.add_argument("--name", default="exp", help="save to project/name")
    group.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")


def check_fraction(option: str, value: float, upper_open: bool = False) -> None:
    """Thresholds and amounts live in [0, 1] ([0, 1) when upper_open)."""
    if not 0 <= value <= 1 or (upper_open and value == 1):
        raise UserError(f"{option} must be in [0, 1{')' if upper_open else ']'}, got {value}")


def check_minimums(low: int, **values: int) -> None:
    """Counts and sizes (keyword: the option, '--max-det' as max_det) of at least low."""
    for key, value in values.items():
        if value < low:
            raise UserError(f"--{key.replace('_', '-')} must be at least {low}, got {value}")


@contextlib.contextmanager
def new_run_dir(project: str, name: str, exist_ok: bool) -> Iterator[Path]:
    """project/name (incremented: exp, exp2, ...), created; call only once the inputs are validated.

    A UserError inside the block (a source that turns out unreadable, a split without labels) removes
    the run folder and any parent this call created, so a failed run leaves no empty exp/ behind and
    the next run is not exp2. A folder that existed before (--exist-ok) is left as it was found.
    """
    from yolo_ray.paths import create_run_dir, resolve_project

    target = resolve_project(project) / name
    first_new = next((p for p in reversed((target, *target.parents)) if not p.exists()), None)
    save_dir = create_run_dir(project, name, exist_ok)
    try:
        yield save_dir
    except UserError:
        if save_dir != target or first_new is not None:  # this call created it
            shutil.rmtree(save_dir, ignore_errors=True)
            _remove_empty_parents(save_dir.parent, first_new)
        raise


def _remove_empty_parents(folder: Path, first_new: Path | None) -> None:
    """rmdir folder and its parents up to first_new (the topmost one this run created), while empty."""
    if first_new is None:
        return
    while folder == first_new or first_new in folder.parents:
        try:
            os.rmdir(folder)
        except OSError:
            return  # another run's folder appeared in it meanwhile: keep it
        folder = folder.parent
