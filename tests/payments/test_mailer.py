"""The mailer: SMTP when configured, a JSON-lines outbox otherwise."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from gpubridge.payments.mailer import Mail, OutboxMailer, SmtpMailer, mailer_from_settings
from gpubridge.settings import Settings


class SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to accept one message without TLS or login."""

    received: list[str]

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 test ESMTP")
        while line := self.rfile.readline():
            command = line.decode().strip().upper()
            if command.startswith(("EHLO", "HELO")):
                self.reply("250 test")
            elif command.startswith(("MAIL", "RCPT", "RSET", "NOOP")):
                self.reply("250 ok")
            elif command == "DATA":
                self.reply("354 go on")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk.decode())
                self.server.received.append("".join(data))  # type: ignore[attr-defined]
                self.reply("250 queued")
            elif command == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not here")


@pytest.fixture
def smtp_server() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SmtpHandler)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_smtp_mailer_delivers_the_message(smtp_server) -> None:
    port = smtp_server.server_address[1]
    mailer = SmtpMailer("127.0.0.1", port, sender="gw@example.com", starttls=False, timeout_s=5)
    with anyio.fail_after(10):
        await mailer.send(Mail(to="you@example.com", subject="Hello", body="the body"))
    [message] = smtp_server.received
    assert "To: you@example.com" in message
    assert "Subject: Hello" in message
    assert "the body" in message


async def test_outbox_mailer_appends_json_lines(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path / "data" / "outbox.jsonl")
    await mailer.send(Mail(to="a@example.com", subject="one", body="1"))
    await mailer.send(Mail(to="b@example.com", subject="two", body="2"))
    lines = [json.loads(line) for line in mailer.path.read_text().splitlines()]
    assert [(m["to"], m["subject"], m["body"]) for m in lines] == [
        ("a@example.com", "one", "1"),
        ("b@example.com", "two", "2"),
    ]


def test_smtp_is_used_only_when_a_host_is_configured(tmp_path: Path) -> None:
    outbox = mailer_from_settings(Settings(data_dir=tmp_path))
    assert isinstance(outbox, OutboxMailer)
    assert outbox.path == tmp_path / "outbox.jsonl"
    smtp = mailer_from_settings(
        Settings(data_dir=tmp_path, smtp_host="mail.example.com", smtp_password=SecretStr("pw"))
    )
    assert isinstance(smtp, SmtpMailer)
    assert smtp.host == "mail.example.com" and smtp.port == 587 and smtp.starttls
