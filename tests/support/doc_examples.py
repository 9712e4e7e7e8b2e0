"""The fenced examples of README.md and docs/*.md, and running them as a newcomer would.

A block is marked on the line before its fence (see docs/development.md): ``<!-- test: run -->``
runs it, ``<!-- test: output -->`` states what the run block before it prints (``...`` stands
for any text), ``<!-- test: skip: why -->`` leaves it out for a reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_BASE_URL = "http://127.0.0.1:8000"
RUNNABLE_LANGUAGES = frozenset({"bash", "sh", "shell", "python"})
MARKER = re.compile(r"^<!--\s*test:\s*(run|output|skip)\s*(?::\s*(.*?))?\s*-->$")
FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)")
SHELL_STATE_SKIP = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})


@dataclass
class Block:
    document: Path
    line: int
    language: str
    marker: str | None
    reason: str
    text: str
    expected: str | None = None

    @property
    def where(self) -> str:
        name = (
            self.document.relative_to(REPO) if self.document.is_relative_to(REPO) else self.document
        )
        return f"{name}:{self.line}"


def documents() -> list[Path]:
    """The README first, then docs/ by name: the order a newcomer reads them in."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks(document: Path) -> list[Block]:
    """Every fenced block of ``document`` with its marker; output blocks attached to the run
    block before them."""
    lines = document.read_text("utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, ticks, language = opening.groups()
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(ticks):
            body.append(lines[end].removeprefix(indent))
            end += 1
        previous = lines[index - 1].strip() if index > 0 else ""
        marked = MARKER.match(previous)
        found.append(
            Block(
                document=document,
                line=index + 1,
                language=language.lower(),
                marker=marked.group(1) if marked else None,
                reason=(marked.group(2) or "") if marked else "",
                text="\n".join(body) + "\n",
            )
        )
        index = end + 1
    return found


def marking_problems(document: Path) -> list[str]:
    """What is wrong with the markers of ``document``: unmarked runnable blocks, skips without
    a reason, outputs that follow no run block, runs of a language the test cannot run."""
    problems = []
    previous: Block | None = None
    for block in blocks(document):
        if block.language in RUNNABLE_LANGUAGES and block.marker not in ("run", "skip"):
            problems.append(f"{block.where}: a {block.language} block needs a run or skip marker")
        if block.marker == "skip" and not block.reason:
            problems.append(f"{block.where}: a skip marker says why (test: skip: reason)")
        if block.marker == "run" and block.language not in RUNNABLE_LANGUAGES:
            problems.append(f"{block.where}: only bash and python blocks can run")
        if block.marker == "output" and (previous is None or previous.marker != "run"):
            problems.append(f"{block.where}: an output block follows the run block it shows")
        previous = block
    return problems


def runnable(document: Path) -> list[Block]:
    """The run blocks of ``document``, each with the output block after it, if any."""
    result: list[Block] = []
    for block in blocks(document):
        if block.marker == "run":
            result.append(block)
        elif block.marker == "output" and result:
            result[-1].expected = block.text
    return result


def output_matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` has the shape ``expected`` states: ``...`` stands for any text, and a
    run of whitespace for any run of whitespace."""
    parts = [re.escape(part) for part in " ".join(expected.split()).split("...")]
    return re.fullmatch(".*?".join(parts), " ".join(actual.split()), re.DOTALL) is not None


@dataclass
class Run:
    block: Block
    returncode: int
    stdout: str
    stderr: str

    def report(self) -> str:
        return (
            f"{self.block.where} ({self.block.language}) exited {self.returncode}\n"
            f"--- block\n{self.block.text}--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


class Newcomer:
    """Runs blocks one after another in ``folder`` (where the server's ``.gpubridge`` data and
    a ``.venv/bin/gpubridge`` are), carrying the shell environment from block to block."""

    def __init__(self, folder: Path, base_url: str, env: dict[str, str], timeout_s: float):
        self.folder = folder
        self.base_url = base_url
        self.env = env
        self.timeout_s = timeout_s
        self._count = 0

    def run(self, block: Block) -> Run:
        self._count += 1
        text = block.text.replace(EXAMPLE_BASE_URL, self.base_url)
        script = self.folder / f"example-{self._count}"
        state = self.folder / f"example-{self._count}.env"
        if block.language == "python":
            script.write_text(text, "utf-8")
            command = [sys.executable, str(script)]
        else:
            script.write_text(f'set -euo pipefail\n{text}\nenv -0 > "{state}"\n', "utf-8")
            command = ["bash", str(script)]
        done = subprocess.run(
            command,
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
            check=False,
        )
        if state.exists():
            pairs = (item.split("=", 1) for item in state.read_text("utf-8").split("\0") if item)
            self.env = {k: v for k, v in pairs if k not in SHELL_STATE_SKIP}
        return Run(block, done.returncode, done.stdout, done.stderr)


def gpubridge_command(folder: Path) -> Path:
    """``folder/.venv/bin/gpubridge``, as ./scripts/serve installs it: this checkout's package
    run by the test environment's Python."""
    command = folder / ".venv" / "bin" / "gpubridge"
    command.parent.mkdir(parents=True, exist_ok=True)
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    command.write_text(
        "#!/usr/bin/env bash\n"
        f"export PYTHONPATH='{python_path}'\n"
        f"exec '{sys.executable}' -m gpubridge \"$@\"\n",
        "utf-8",
    )
    command.chmod(0o755)
    return command


LINK = re.compile(r"\]\(([^)\s]+)\)")


def headings(document: Path) -> set[str]:
    """The anchors of ``document``'s headings, as GitHub makes them."""
    anchors = set()
    in_fence = False
    for line in document.read_text("utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def broken_links(document: Path) -> list[str]:
    """The links of ``document`` to files of this repository, or their headings, that do not
    exist."""
    broken = []
    for target in LINK.findall(document.read_text("utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{document.name}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in headings(linked):
            broken.append(f"{document.name}: {target} (no such heading)")
    return broken
