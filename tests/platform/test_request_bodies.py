"""Request bodies on real servers, over real sockets: gunicorn with docker/gunicorn.conf.py (production)
and Django's development server (``make demo``, here the test live server, which uses its handler).

A body announced larger than its endpoint takes is answered 413 at once, before a byte of it is sent;
a body that stops arriving is answered 408 after REQUEST_BODY_TIMEOUT seconds without a byte, and
nothing of it is stored (a resumable upload keeps what arrived)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, wait_for, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

#: Seconds without a byte before a body is given up, for these tests (production: 60).
TIMEOUT = 1.5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ask(port: int, head: str, body: bytes = b"", *, wait: float = 30.0) -> tuple[int, dict[str, Any], float]:
    """Send ``head`` (the request line and headers) and ``body``, send nothing more, and read the answer:
    its status, its JSON body and the seconds it took after the last byte was sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as client:
        client.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        sent = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            chunk = client.recv(65536)
            if not chunk:
                break
            answer += chunk
        took = time.monotonic() - sent
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}"), took


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


@pytest.fixture
def world(make_user: Callable[..., Any]) -> dict[str, Any]:
    """An admin with a personal token, a cohort, and a resumable upload waiting for its bytes (committed:
    the servers run in other threads and processes)."""
    from sua_portal.accounts import tokens
    from sua_portal.accounts.models import Membership, Project
    from sua_portal.slides.models import Cohort, SlideUpload

    admin = make_user("body-admin", "admin")
    project = Project.objects.create(name="Bodies")
    Membership.objects.create(project=project, user=admin)
    cohort = Cohort.objects.create(project=project, name="Uploads", split="test")
    upload = SlideUpload.objects.create(cohort=cohort, filename="big.svs", size_bytes=2_000_000, created_by=admin)
    _, key = tokens.issue(admin, name="bodies")
    return {"cohort": cohort, "upload": upload, "auth": f"Authorization: Token {key}"}


def _stored() -> tuple[int, int]:
    from sua_portal.slides.models import Slide, SlideUpload

    return Slide.objects.count(), SlideUpload.objects.count()


def _multipart_head(world: dict[str, Any], length: int) -> str:
    return (f"POST /api/cohorts/{world['cohort'].pk}/slides/ HTTP/1.1\nHost: 127.0.0.1\n{world['auth']}\n"
            f"Content-Type: multipart/form-data; boundary=sua\nContent-Length: {length}\n")


PART = b'--sua\r\nContent-Disposition: form-data; name="file"; filename="big.svs"\r\n\r\n' + b"x" * 5000


def _check_both_answers(port: int, world: dict[str, Any], files: Callable[[], list[str]]) -> None:
    # 30 GiB announced: refused before a byte of it is sent, long before the body deadline.
    status, body, took = _ask(port, _multipart_head(world, 30 * 1024**3))
    assert status == 413 and "at most 21,474,902,016 bytes" in body["detail"], body
    assert took < TIMEOUT
    # A slide sent whole that stops after 5 kB of 100 kB: a 408 once nothing came for TIMEOUT seconds.
    status, body, took = _ask(port, _multipart_head(world, 100_000), PART)
    assert status == 408, body
    assert f"nothing came for {TIMEOUT:g} s before its 100,000 bytes were complete" in body["detail"]
    assert TIMEOUT - 0.5 <= took < TIMEOUT + 15
    assert _stored() == (0, 1) and files() == []
    # A chunk of a resumable upload that stops: what arrived is kept, the upload says where to go on.
    upload = world["upload"]
    status, body, _ = _ask(port, (f"PUT /api/uploads/{upload.pk}/ HTTP/1.1\nHost: 127.0.0.1\n{world['auth']}\n"
                                  "Content-Type: application/octet-stream\nUpload-Offset: 0\n"
                                  f"Content-Length: {upload.size_bytes}\n"), b"y" * 1_000_000)
    assert status == 408 and "A resumable upload keeps what arrived" in body["detail"]
    upload.refresh_from_db()
    # All but the block whose read ran into the deadline.
    assert 500_000 < upload.received_bytes <= 1_000_000


@pytest.fixture
def gunicorn(world: dict[str, Any], tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """gunicorn as docker/entrypoint.sh starts it (its config file), one process of two threads, on the test
    database; its temporary files (Django's upload files) go to a folder of the test's."""
    port = _free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = worker_env(REQUEST_BODY_TIMEOUT=str(TIMEOUT), GUNICORN_WORKERS="1", GUNICORN_THREADS="2",
                     TMPDIR=str(temp))
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "sua_portal.wsgi:application", "--config",
             str(ROOT / "docker" / "gunicorn.conf.py"), "--chdir", str(ROOT), "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        def answers() -> bool:
            try:
                return _ask(port, "GET /api/me/ HTTP/1.1\nHost: 127.0.0.1\n" + world["auth"] + "\n", wait=5)[0] == 200
            except OSError:
                assert proc.poll() is None, log.read_text()
                return False

        wait_for(answers, timeout=60, what="gunicorn")
        yield port, temp
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_gunicorn_refuses_a_body_too_large_at_once_and_answers_a_stalled_one(
    gunicorn: tuple[int, Path], world: dict[str, Any], settings: Any,
) -> None:
    port, temp = gunicorn
    media = Path(settings.MEDIA_ROOT)
    before = {p for p in media.rglob("*") if p.is_file()}
    _check_both_answers(port, world, lambda: sorted(
        str(p) for p in [*temp.rglob("*"), *(p for p in media.rglob("*") if p not in before)] if p.is_file()))


def test_the_development_server_answers_a_stalled_body_too(
    live_server: Any, world: dict[str, Any], settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    from django.core.servers import basehttp

    from sua_portal.core import bodies

    settings.REQUEST_BODY_TIMEOUT = TIMEOUT
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    settings.SLIDE_UPLOAD_STAGING_DIR = str(tmp_path / "staging")
    # As the app does when it starts (CoreConfig.ready), with this test's deadline.
    monkeypatch.setattr(basehttp.WSGIRequestHandler, "timeout", None)
    bodies.arm_development_server()
    assert basehttp.WSGIRequestHandler.timeout == TIMEOUT
    port = int(live_server.url.rsplit(":", 1)[1])
    _check_both_answers(port, world, lambda: sorted(str(p) for p in tmp_path.glob("*") if p.is_file()))
