"""The docs' commands and links point at things that exist: every `scripts/X.py` or `benchmarks/X.py` a bash
block runs exists and accepts each option the command gives it, and every relative link and picture resolves."""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
RUNNABLE = re.compile(r"^(scripts|benchmarks)/\w+\.py$")
OPERATORS = {"&&", "||", ";", "|", "&", ">", ">>", "<", "(", ")"}


def bash_commands(doc: Path) -> list[list[str]]:
    """The words of each simple command in the doc's bash blocks (continuations joined, comments dropped,
    `a && b | c; d` split at its operators)."""
    commands = []
    for block in BASH_BLOCK.findall(doc.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            command: list[str] = []
            for word in lexer:
                if word in OPERATORS:
                    commands.append(command)
                    command = []
                else:
                    command.append(word)
            commands.append(command)
    return [c for c in commands if c]


def script_invocation(words: list[str]) -> tuple[str, list[str]] | None:
    """(script path, its options) when the command runs a project script."""
    scripts = [i for i, w in enumerate(words) if RUNNABLE.match(w)]
    if not scripts:
        return None
    options = [w.split("=", 1)[0] for w in words[scripts[0] + 1 :] if w.startswith("--")]
    return words[scripts[0]], options


@functools.cache
def accepted_options(script: str) -> frozenset[str]:
    """The options the script's --help lists (its argparse parser, as a user sees it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    help_text = subprocess.run(
        [sys.executable, str(REPO / script), "--help"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert help_text.returncode == 0, f"{script} --help failed:\n{help_text.stderr[-2000:]}"
    return frozenset(re.findall(r"--[\w-]+", help_text.stdout))


def all_invocations() -> list[tuple[str, str, list[str]]]:
    found = [
        (doc.relative_to(REPO).as_posix(), script_invocation(words)) for doc in DOCS for words in bash_commands(doc)
    ]
    return [(doc, *invocation) for doc, invocation in found if invocation]


def test_the_docs_run_project_scripts():
    """The extraction itself: the README's quick start and its evolve/train/val commands are found."""
    scripts = {script for _, script, _ in all_invocations()}
    assert {
        "scripts/evolve.py",
        "scripts/train.py",
        "scripts/val.py",
        "scripts/detect.py",
        "scripts/export.py",
    } <= scripts


@pytest.mark.parametrize("doc,script,options", all_invocations(), ids=lambda v: v if isinstance(v, str) else None)
def test_every_documented_command_names_a_script_and_options_that_exist(doc, script, options):
    assert (REPO / script).is_file(), f"{doc}: {script} does not exist"
    unknown = sorted(set(options) - accepted_options(script))
    assert not unknown, f"{doc}: {script} does not accept {unknown}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.relative_to(REPO).as_posix())
def test_every_relative_link_and_picture_exists(doc):
    targets = [t for t in MARKDOWN_LINK.findall(doc.read_text()) if "://" not in t]
    missing = [t for t in targets if not (doc.parent / t).exists()]
    assert not missing, f"{doc.name} links to missing files: {missing}"


def test_the_readme_stays_a_readme():
    """Long material lives in docs/ and benchmarks/; the README names no development-machine paths."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 260
    assert "../shared" not in text
