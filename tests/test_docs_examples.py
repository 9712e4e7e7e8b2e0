"""The examples of README.md and docs/ run as written, against a real ``gpubridge serve`` of
the starter profile, in the order a newcomer reads them (docs/development.md says how blocks
are marked)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.doc_examples import (
    REPO,
    Newcomer,
    broken_links,
    documents,
    gpubridge_command,
    marking_problems,
    output_matches,
    runnable,
)

READY_TIMEOUT_S = 300
"""The starter models load at start: seconds on an idle machine, minutes on a busy one."""
BLOCK_TIMEOUT_S = 180
SHUTDOWN_TIMEOUT_S = 15


@pytest.mark.parametrize("document", documents(), ids=lambda path: path.name)
def test_every_shell_and_python_example_is_marked_to_run_or_skipped_for_a_reason(
    document: Path,
) -> None:
    assert marking_problems(document) == []


@pytest.mark.parametrize("document", documents(), ids=lambda path: path.name)
def test_links_between_the_readme_and_docs_reach_a_file_and_heading(document: Path) -> None:
    assert broken_links(document) == []


def test_an_example_left_unmarked_or_skipped_without_a_reason_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nls\n```\n<!-- test: skip -->\n```python\npass\n```\n"
        "<!-- test: output -->\n```text\nhi\n```\n<!-- test: run -->\n```bash\nls\n```\n"
    )
    assert [problem.split(": ", 1)[1] for problem in marking_problems(page)] == [
        "a bash block needs a run or skip marker",
        "a skip marker says why (test: skip: reason)",
        "an output block follows the run block it shows",
    ]


def test_a_link_to_a_missing_file_or_heading_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n## Next steps\n\n[a](#next-steps) [b](#gone) [c](other.md)\n")
    assert broken_links(page) == [
        "page.md: #gone (no such heading)",
        "page.md: other.md (no such file)",
    ]


def test_the_readme_shows_runnable_examples_with_their_output() -> None:
    blocks = runnable(REPO / "README.md")
    assert {block.language for block in blocks} == {"bash", "python"}
    assert any(block.expected for block in blocks)


def test_a_stated_output_is_a_shape_where_dots_stand_for_any_text() -> None:
    assert output_matches(
        '{"id":"...","status":"completed",...}', '{"id":"7f","status":"completed","cost":1}'
    )
    assert output_matches("completed 384\nevent: status", "completed   384\n\nevent: status\n")
    assert not output_matches("completed 384", "failed 384")
    assert not output_matches("ok", "ok, and more")


@dataclass
class Served:
    folder: Path
    base_url: str
    env: dict[str, str]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text("utf-8", errors="replace")[-4000:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``gpubridge serve`` on a free port, run from a folder laid out as a checkout after
    ./scripts/serve: its data in ``.gpubridge``, the command in ``.venv/bin/gpubridge``."""
    folder = tmp_path_factory.mktemp("newcomer")
    gpubridge_command(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUBRIDGE_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    server_env = {
        **env,
        "GPUBRIDGE_DATA_DIR": str(folder / ".gpubridge"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    }
    port = free_port()
    log = folder / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gpubridge", "serve", "--port", str(port)],
            cwd=folder,
            env=server_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    served = Served(folder, f"http://127.0.0.1:{port}", env, log)
    try:
        wait_until_ready(server, served)
        yield served
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_until_ready(server: subprocess.Popen[bytes], served: Served) -> None:
    """Until ``/readyz`` answers 200 (the starter models are warm), within READY_TIMEOUT_S."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"gpubridge serve exited:\n{served.log_tail()}"
        try:
            if httpx.get(f"{served.base_url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)  # polling a starting server, bounded by the deadline
    pytest.fail(f"/readyz did not answer 200 within {READY_TIMEOUT_S} s:\n{served.log_tail()}")


@pytest.mark.slow
def test_the_readme_and_docs_examples_run_as_written_in_reading_order(served: Served) -> None:
    newcomer = Newcomer(served.folder, served.base_url, served.env, BLOCK_TIMEOUT_S)
    ran = 0
    for document in documents():
        for block in runnable(document):
            run = newcomer.run(block)
            assert run.returncode == 0, f"{run.report()}--- server log\n{served.log_tail()}"
            if block.expected is not None:
                assert output_matches(block.expected, run.stdout), (
                    f"{block.where}: the output does not match the one stated after it\n"
                    f"--- stated\n{block.expected}--- printed\n{run.stdout}"
                    f"--- stderr\n{run.stderr}"
                )
            ran += 1
    assert ran >= len(runnable(REPO / "README.md")) > 0
