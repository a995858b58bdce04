"""Many machines: with STORAGE_BACKEND=s3 slides and heatmaps live only in object storage.

An S3-compatible server (moto) runs beside the test; the web side is this process, with its own
disk (media, upload staging, slide cache); a cpu-queue and a gpu-queue worker run as separate
processes, each with a slide cache and a MEDIA_ROOT of its own that nobody else writes to, as if
on machines of their own.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sua_portal.ensembles import services
from sua_portal.ensembles.models import SlideHeatmap
from sua_portal.slides.models import Cohort, Slide
from tests.conftest import start_worker, stop_worker, wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

BUCKET = "sua-slides"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """An S3 server on a free port with an empty bucket: its URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3_client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def bucket_keys(endpoint: str) -> set[str]:
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.suffix != ".lock")


@pytest.fixture
def web_on_s3(settings: Any, tmp_path: Path, s3_endpoint: str) -> dict[str, Path]:
    """This process as the web server on object storage: its own media, staging and cache folders."""
    disk = {name: tmp_path / "web" / name for name in ("media", "staging", "cache", "upload-tmp")}
    for path in disk.values():
        path.mkdir(parents=True)
    settings.STORAGE_BACKEND = "s3"
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": s3_endpoint, "region_name": "us-east-1",
                    "access_key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    "secret_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]},
    }}
    settings.MEDIA_ROOT = str(disk["media"])
    settings.SLIDE_UPLOAD_STAGING_DIR = str(disk["staging"])
    settings.SLIDE_CACHE_DIR = str(disk["cache"])
    settings.FILE_UPLOAD_TEMP_DIR = str(disk["upload-tmp"])
    return disk


@pytest.fixture
def other_workers_paused() -> Iterator[None]:
    """Workers already on this broker (the session's shared one, on local storage) stop taking tasks."""
    from sua_portal.celery import app

    paused = {name for queue in ("gpu", "cpu")
              for reply in app.control.cancel_consumer(queue, reply=True, timeout=1.0) for name in reply}
    app.control.purge()
    yield
    for name in paused:
        for queue in ("gpu", "cpu"):
            app.control.add_consumer(queue, destination=[name], reply=True, timeout=5.0)


@pytest.fixture
def s3_workers(tmp_path: Path, s3_endpoint: str, web_on_s3: dict[str, Path], other_workers_paused: None
               ) -> Iterator[dict[str, dict[str, Path]]]:
    """A cpu-queue and a gpu-queue worker, each with a slide cache and a MEDIA_ROOT of its own."""
    machines = {queue: {name: tmp_path / f"worker-{queue}" / name for name in ("media", "cache")}
                for queue in ("cpu", "gpu")}
    procs = []
    try:
        for queue, disk in machines.items():
            for path in disk.values():
                path.mkdir(parents=True)
            env = worker_env(
                STORAGE_BACKEND="s3", AWS_STORAGE_BUCKET_NAME=BUCKET, AWS_S3_ENDPOINT_URL=s3_endpoint,
                AWS_S3_REGION_NAME="us-east-1", **CREDENTIALS,
                MEDIA_ROOT=str(disk["media"]), SLIDE_CACHE_DIR=str(disk["cache"]),
            )
            procs.append(start_worker(env, queues=queue, name=f"s3-{queue}-{tmp_path.name}",
                                      log=tmp_path / f"worker-{queue}.log"))
        yield machines
    finally:
        for proc in procs:
            stop_worker(proc)


def test_a_slide_uploaded_through_the_web_is_checked_and_inferred_by_workers_that_never_saw_its_disk(
    s3_endpoint: str, web_on_s3: dict[str, Path], s3_workers: dict[str, dict[str, Path]],
    people: dict[str, Any], api_for: Callable[[Any], Any], make_ensemble: Callable[..., Any],
    synthetic_cohort: Path, tmp_path: Path,
) -> None:
    ensemble = make_ensemble()  # its member checkpoints go to the bucket too
    cohort = Cohort.objects.create(project=people["own"], name="Sentinel nodes", split="test")
    client = api_for(people["admin"])
    content = (synthetic_cohort / "validation" / "validation_01.tiff").read_bytes()
    digest = hashlib.sha256(content).hexdigest()

    # A resumable upload: the chunks gather in the web's staging folder, the finished file goes to the bucket.
    started = client.post(f"/api/cohorts/{cohort.pk}/uploads/",
                          {"filename": "validation_01.tiff", "size": len(content), "sha256": digest}, format="json")
    assert started.status_code == 201, started.content
    upload = started.json()["id"]
    half = len(content) // 2
    for start, chunk in ((0, content[:half]), (half, content[half:])):
        sent = client.generic("PUT", f"/api/uploads/{upload}/", chunk, content_type="application/octet-stream",
                              HTTP_CONTENT_RANGE=f"bytes {start}-{start + len(chunk) - 1}/{len(content)}")
        assert sent.status_code == 200, sent.content
    done = client.post(f"/api/uploads/{upload}/complete/")
    assert done.status_code == 201, done.content
    slide = Slide.objects.get(pk=done.json()["id"])
    assert slide.file.name in bucket_keys(s3_endpoint)
    # The slide's bytes are nowhere on the web's disk now: only the bucket has them.
    assert {name: files(path) for name, path in web_on_s3.items()} == {name: [] for name in web_on_s3}

    # The cpu worker checks it from its own cache.
    checked = wait_for(lambda: Slide.objects.filter(pk=slide.pk).exclude(status="uploaded").first(),
                       timeout=60, what="the cpu worker's slide check")
    assert checked.status == "ready", checked.failure_reason
    assert checked.width and checked.height and checked.tissue_fraction
    cached = Path(digest[:2]) / digest / "validation_01.tiff"
    assert files(s3_workers["cpu"]["cache"]) == [cached]
    assert (s3_workers["cpu"]["cache"] / cached).read_bytes() == content

    # The gpu worker infers it from its own cache and puts the four heatmaps in the bucket.
    queued = client.post(f"/api/ensembles/{ensemble.pk}/run/", {"slides": [slide.pk]}, format="json")
    assert queued.status_code == 202, queued.content
    heatmap = wait_for(lambda: SlideHeatmap.objects.filter(pk=queued.json()[0]["id"], status__in=["done", "failed"])
                       .first(), timeout=90, what="the gpu worker's heatmaps")
    assert heatmap.status == "done", heatmap.failure_reason
    assert files(s3_workers["gpu"]["cache"]) == [cached]
    keys = bucket_keys(s3_endpoint)
    assert {getattr(heatmap, kind).name for kind in services.HEATMAP_KINDS} <= keys
    assert {name for name in keys if name.startswith("heatmaps/")} == {
        f"heatmaps/{ensemble.pk}/{slide.pk}/{kind}.tiff" for kind in services.HEATMAP_KINDS}

    # No worker stored anything on its own disk but its cache; nothing landed in the web's media either.
    for disk in s3_workers.values():
        assert files(disk["media"]) == []
    assert files(web_on_s3["media"]) == []

    # The web serves the viewer from its own cache and the heatmap overlay from the bucket.
    thumbnail = client.get(f"/api/slides/{slide.pk}/thumbnail.png")
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/png"
    assert files(web_on_s3["cache"]) == [cached]
    overlay = client.get(f"/api/heatmaps/{heatmap.pk}/image/?kind=entropy")
    assert overlay.status_code == 200 and overlay.content.startswith(b"\x89PNG")
