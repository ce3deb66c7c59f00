"""The command lines: train, evolve, val, detect and export, each a parser and a main(argv) that prints
one `error:` line (exit 2) for bad input. `yolo-ray COMMAND` and `python scripts/COMMAND.py` run them."""
