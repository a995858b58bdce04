"""Fixtures of the slides tests: real slide files, a private storage directory per test, cohorts."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest


@dataclass
class Storage:
    media: Path
    staging: Path
    tmp: Path

    def files(self) -> list[str]:
        """Every file in storage, staging and Django's upload temp dir (what a refused upload must not leave)."""
        return sorted(str(p) for base in (self.media, self.staging, self.tmp) for p in base.rglob("*") if p.is_file())


@pytest.fixture
def storage(settings: Any, tmp_path: Path) -> Iterator[Storage]:
    """MEDIA_ROOT, the upload staging dir and Django's upload temp dir, all empty and private to the test."""
    store = Storage(media=tmp_path / "media", staging=tmp_path / "staging", tmp=tmp_path / "upload-tmp")
    for path in (store.media, store.staging, store.tmp):
        path.mkdir()
    settings.MEDIA_ROOT = str(store.media)
    settings.SLIDE_UPLOAD_STAGING_DIR = str(store.staging)
    settings.FILE_UPLOAD_TEMP_DIR = str(store.tmp)
    yield store
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def cohort(people: dict[str, Any]) -> Any:
    from sua_portal.slides.models import Cohort

    return Cohort.objects.create(project=people["own"], name="Camelyon train", split="train", domain="in-domain")


@pytest.fixture
def foreign_cohort(people: dict[str, Any]) -> Any:
    from sua_portal.slides.models import Cohort

    return Cohort.objects.create(project=people["foreign"], name="Elsewhere", split="test", domain="shifted")


@pytest.fixture
def add_slide(storage: Storage, testdata: Path) -> Callable[..., Any]:
    """Store a test slide through the service (optionally checked here, in-process) and return it."""

    def add(cohort: Any, name: str = "boxes.tiff", *, check: bool = True, probe: bool = True,
            path: Path | None = None) -> Any:
        from sua_portal.slides import services

        slide = services.store_slide(cohort, path or testdata / name, filename=(path or testdata / name).name,
                                     probe=probe, queue_check=False)
        if check:
            slide = services.check_slide(slide.pk) or slide
        return slide

    return add


def multipart(field: str, filename: str, content: bytes, **fields: str) -> tuple[bytes, str]:
    """A multipart/form-data body written by hand: Django's test client would strip paths from file names."""
    boundary = "----sua-test-boundary"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def checks_sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The slide ids whose check is sent from now on (recorded at the broker's door, not sent).

    Tasks leave when their transaction commits (``sua_portal.celery.enqueue``), so inside a test's
    transaction nothing is recorded until the on-commit callbacks run.
    """
    from sua_portal.celery import app
    from sua_portal.slides import tasks

    sent: list[int] = []

    def record(task_name: str, args: list[Any], *, queue: str, task_id: str) -> Any:
        # Services queue the task by name: the name must be the task's own.
        assert task_name == tasks.check_slide.name and queue == "cpu"
        sent.append(int(args[0]))
        return SimpleNamespace(id=task_id)

    monkeypatch.setattr(app, "send_task", record)
    return sent
