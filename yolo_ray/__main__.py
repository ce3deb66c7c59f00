"""yolo-ray COMMAND [options]: train, evolve, val, detect or export (also `python -m yolo_ray COMMAND`).

One entry point rather than five: one name on PATH that clashes with no other package's `train` or
`detect`, as Ultralytics' `yolo TASK`; each command takes exactly the options of scripts/COMMAND.py.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = ("train", "evolve", "val", "detect", "export")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}; " if argv and not argv[0].startswith("-") else ""
        stream = sys.stdout if argv[:1] in (["-h"], ["--help"]) else sys.stderr
        print(
            f"usage: yolo-ray {{{','.join(COMMANDS)}}} [options]   ({given}yolo-ray COMMAND --help: its options)",
            file=stream,
        )
        return 0 if stream is sys.stdout else 2
    return importlib.import_module(f"yolo_ray.commands.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
