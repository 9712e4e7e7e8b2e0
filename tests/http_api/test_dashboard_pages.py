"""What the dashboard's pages show of jobs and outputs: short ids, error summaries, media."""

from __future__ import annotations

import json
from types import SimpleNamespace

from gpubridge.http_api.dashboard_pages import (
    ERROR_SUMMARY_CHARS,
    error_parts,
    output_view,
    render,
    short_id,
)
from gpubridge.jobs.status import JobStatus

JOB_ID = "0b7f9a52-5d1e-4c44-9c59-3d4c7e1f2a10"


def test_a_short_id_is_the_first_eight_characters() -> None:
    assert short_id(JOB_ID) == "0b7f9a52"


def test_an_error_is_summarized_on_one_line_and_kept_whole_for_details() -> None:
    message = "Traceback (most recent call last):\n" + "  File x\n" * 50 + "RuntimeError: boom"
    long_line = "x" * 500
    code, summary, detail = error_parts({"code": "backend_error", "message": message, "n": 1})
    assert (code, summary) == ("backend_error", "Traceback (most recent call last):")
    assert json.loads(detail) == {"code": "backend_error", "message": message, "n": 1}
    _, summary, _ = error_parts({"code": "x", "message": long_line})
    assert len(summary) == ERROR_SUMMARY_CHARS and summary.endswith("\u2026")
    assert error_parts(None) == ("", "", "")


def test_an_outputs_files_become_players_by_their_content_type() -> None:
    output = {
        "images": [
            {
                "file_id": "f1",
                "content_type": "image/png",
                "url": "http://x/files/f1",
                "base64": "AA",
            }
        ],
        "audio": {"file_id": "f2", "content_type": "audio/wav"},
        "video": {"file_id": "f3", "content_type": "video/mp4"},
        "mask": {"file_id": "f4", "content_type": "application/json"},
    }
    view = output_view(output)
    assert [(m["kind"], m["url"]) for m in view["media"]] == [
        ("image", "/files/f1"),
        ("audio", "/files/f2"),
        ("video", "/files/f3"),
        ("file", "/files/f4"),
    ]
    assert "base64" not in view["json"]


def test_text_outputs_show_their_text_and_long_lists_are_cut_in_the_json() -> None:
    view = output_view({"text": "Hello!", "embedding": list(range(100))})
    assert view["text"] == "Hello!"
    shown = json.loads(view["json"])
    assert shown["embedding"][:8] == list(range(8)) and shown["embedding"][8] == "\u2026 92 more"


def test_the_job_page_renders_media_players_and_escapes_text() -> None:
    view = output_view(
        {"text": "<b>hi</b>", "audio": {"file_id": "f2", "content_type": "audio/wav"}}
    )

    job = SimpleNamespace(
        id=JOB_ID, service="tts-l4", model="kokoro-82m", backend=None, status=JobStatus.COMPLETED
    )
    page = render(
        "job",
        csrf="t",
        section="playground",
        job=job,
        view={"execution_time_seconds": None},
        short_id=short_id(JOB_ID),
        terminal=True,
        output=view,
        curl="curl ...",
    )
    assert '<audio controls src="/files/f2"></audio>' in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi</b>" not in page
    assert 'http-equiv="refresh"' not in page  # a finished job's page does not reload
