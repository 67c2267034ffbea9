"""The SMTP sink keeps every email: a restart or a second sink never overwrites a saved one."""

from __future__ import annotations

import smtplib
import threading
from email.message import EmailMessage
from pathlib import Path

from tidings.sandbox.smtp import SmtpSink, save_new


def send(sink: SmtpSink, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "tidings@example.com"
    message["To"] = "ada@example.com"
    message["Subject"] = subject
    message.set_content("body")
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
        client.send_message(message)


def subjects(folder: Path) -> dict[str, str]:
    return {
        p.name: next(line for line in p.read_text().splitlines() if line.startswith("Subject:"))
        for p in sorted(folder.glob("*.eml"))
    }


def test_a_restarted_sink_continues_numbering(tmp_path: Path) -> None:
    with SmtpSink(save_dir=tmp_path) as first:
        send(first, "first run")
    with SmtpSink(save_dir=tmp_path) as second:
        send(second, "second run")
    assert subjects(tmp_path) == {"00001.eml": "Subject: first run", "00002.eml": "Subject: second run"}


def test_numbering_follows_the_highest_existing_file(tmp_path: Path) -> None:
    (tmp_path / "00007.eml").write_text("Subject: kept\n")
    (tmp_path / "notes.eml").write_text("Subject: mine\n")
    with SmtpSink(save_dir=tmp_path) as sink:
        send(sink, "new")
        send(sink, "newer")
    assert sink.saved == [tmp_path / "00008.eml", tmp_path / "00009.eml"]
    assert subjects(tmp_path) == {
        "00007.eml": "Subject: kept",
        "00008.eml": "Subject: new",
        "00009.eml": "Subject: newer",
        "notes.eml": "Subject: mine",
    }


def test_concurrent_savers_never_clobber_each_other(tmp_path: Path) -> None:
    """Several sinks on one folder race for the same next number; exclusive create keeps all."""
    barrier = threading.Barrier(6)

    def saver(n: int) -> None:
        barrier.wait()
        for i in range(25):
            save_new(tmp_path, f"Subject: {n}-{i}\n".encode())

    threads = [threading.Thread(target=saver, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    saved = subjects(tmp_path)
    assert len(saved) == 150
    assert sorted(saved.values()) == sorted(f"Subject: {n}-{i}" for n in range(6) for i in range(25))
    assert sorted(saved) == [f"{k:05d}.eml" for k in range(1, 151)]
