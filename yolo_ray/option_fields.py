"""How an option is declared and checked: a dataclass field carrying its help, flags, group, kind, valid
range and choices (option()), and the checks every config runs on construction (check_values).

yolo_ray.options declares the options themselves; argparse (cli.py) and validation read them through here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from yolo_ray.config import INF, UserError, range_problem

# Option groups: which argparse group shows a field and what a run does with it.
TRAINING = "training"  # how a model trains: a single run and every evolution trial take these
RUN = "run"  # a single run's saving, validation and stopping (train.py only)
FOLDER = "folder"  # where a single run's folder goes; the loop never sees these
RAY = "Ray"  # where a run's workers go; the loop never sees these
SEARCH = "evolution"


def option(
    default: Any,
    help: str,
    *,
    flags: tuple[str, ...] = (),
    group: str = TRAINING,
    kind: type | None = None,
    low: float | None = None,
    high: float = INF,
    low_open: bool = False,
    high_open: bool = True,
    choices: tuple[str, ...] | None = None,
    nargs: str | None = None,
    const: Any = None,
    runtime: bool | None = None,
    negated: str | None = None,
    deprecated: tuple[str, ...] = (),
) -> Any:
    """A config field with what argparse and validation need to know about it.

    kind: the element type (int, float, str); low..high: the valid interval (checked for every element of
    a list); negated: the --no-x flag of an option that is on by default; deprecated: old spellings that
    still work and say once that they are old; runtime (an evolution's): taken from the current command even
    when resuming a run (by default the Ray options are).
    """
    meta = dict(
        help=help,
        flags=flags,
        group=group,
        kind=kind or _kind(default),
        low=low,
        high=high,
        low_open=low_open,
        high_open=high_open,
        choices=choices,
        nargs=nargs,
        const=const,
        runtime=group == RAY if runtime is None else runtime,
        negated=negated,
        deprecated=deprecated,
    )
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _kind(default: Any) -> type | None:
    if isinstance(default, list):
        return type(default[0]) if default else str
    return None if default is None else type(default)


def config_fields(cls: type, groups: tuple[str, ...] | None = None) -> list[dataclasses.Field]:
    """The option fields of a config class (in declaration order), those of `groups` only when given."""
    return [
        f for f in dataclasses.fields(cls) if "help" in f.metadata and (groups is None or f.metadata["group"] in groups)
    ]


def option_keys(cls: type, *groups: str) -> tuple[str, ...]:
    return tuple(f.name for f in config_fields(cls, groups))


def flag_of(f: dataclasses.Field) -> str:
    """The option's first spelling on the command line, as error messages name it (--label-smoothing)."""
    return f.metadata["flags"][0] if f.metadata["flags"] else "--" + f.name.replace("_", "-")


def check_values(config: Any) -> None:
    """Coerce each option to its kind and check its range and choices: one UserError naming the option."""
    for f in config_fields(type(config)):
        value = getattr(config, f.name)
        checked = _checked(f, value)
        if checked is not value:
            object.__setattr__(config, f.name, checked)


def _checked(f: dataclasses.Field, value: Any) -> Any:
    meta = f.metadata
    if value is None or isinstance(value, (bool, dict)) or (meta["nargs"] == "?" and value is True):
        return value
    if isinstance(value, (list, tuple)):
        return [_checked_one(f, v) for v in value]
    return _checked_one(f, value)


def _checked_one(f: dataclasses.Field, value: Any) -> Any:
    meta, flag = f.metadata, flag_of(f)
    kind = meta["kind"]
    if kind in (int, float) and not isinstance(value, bool):
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise UserError(f"{flag}: expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None
        if kind is int and number != float(value):
            raise UserError(f"{flag}: expected an integer, got {value!r}")
        value = number
    if meta["choices"] and value not in meta["choices"]:
        raise UserError(f"argument {flag}: invalid choice: {value!r} (choose from {', '.join(meta['choices'])})")
    if meta["low"] is not None:
        problem = range_problem(value, meta["low"], meta["high"], meta["low_open"], meta["high_open"])
        if problem:
            raise UserError(f"{flag} {problem}")
    return value


def config_from_options(cls: type, options: Mapping[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in names})


def plain_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [plain_value(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
    return value
