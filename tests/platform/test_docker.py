"""docker/ is checked without a Docker engine: the compose file against the Compose
Specification, and everything it names against the project."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
# Variables the official postgres and MinIO images read, and the bucket-creating shell's own.
IMAGE_VARIABLES = {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",
                   "BUCKET"}


def _settings_variables() -> set[str]:
    sources = (ROOT / "sua_portal" / "settings.py").read_text()
    return set(re.findall(r'env(?:str|bool|int|float|list)\("([A-Z0-9_]+)"', sources))


def test_compose_file_follows_the_compose_specification() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         str(DOCKER / "compose.yaml")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_has_its_services_object_storage_one_beat_and_a_gpu_reservation() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "redis", "minio", "minio-bucket", "web", "worker-cpu", "worker-gpu", "beat"}
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_every_dockerfile_and_copied_path_exists() -> None:
    for service in COMPOSE["services"].values():
        build = service.get("build")
        if not build:
            continue
        dockerfile = (DOCKER / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile.is_file(), dockerfile
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY ") and "--from" not in line:
                for source in line.split()[1:-1]:
                    assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which is missing"


def test_images_used_by_app_services_are_built_here() -> None:
    built = {s["image"] for s in COMPOSE["services"].values() if "build" in s}
    for name in ("web", "worker-cpu", "worker-gpu", "beat"):
        assert COMPOSE["services"][name]["image"] in built


def test_every_command_is_one_the_entrypoint_knows() -> None:
    entrypoint = (DOCKER / "entrypoint.sh").read_text()
    for name in ("web", "worker-cpu", "worker-gpu", "beat"):
        command = COMPOSE["services"][name]["command"][0]
        assert re.search(rf"^\s*{re.escape(command)}\)", entrypoint, re.M), command
    assert "sua_portal.wsgi:application" in entrypoint
    assert (ROOT / "sua_portal" / "wsgi.py").is_file()


def test_every_environment_variable_is_read_by_the_project() -> None:
    known = _settings_variables() | IMAGE_VARIABLES
    named: set[str] = set()
    for service in COMPOSE["services"].values():
        named |= set((service.get("environment") or {}).keys())
    example = (DOCKER / ".env.example").read_text()
    named |= set(re.findall(r"^([A-Z0-9_]+)=", example, re.M))
    unknown = named - known
    assert not unknown, f"compose or .env.example name variables nothing reads: {sorted(unknown)}"
    assert "SECRET_KEY" in named and "DATABASE_URL" in named


def test_the_web_and_the_workers_share_no_disk_and_keep_slides_in_object_storage() -> None:
    services = COMPOSE["services"]
    apps = ("web", "worker-cpu", "worker-gpu")
    volumes = {name: {v.split(":")[0] for v in services[name]["volumes"]} for name in apps}
    for name in apps:
        others = set().union(*(volumes[o] for o in apps if o != name))
        assert not volumes[name] & others, f"{name} shares {volumes[name] & others}"
        environment = services[name]["environment"]
        assert environment["STORAGE_BACKEND"] == "s3"
        assert environment["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert int(environment["SLIDE_CACHE_MAX_BYTES"].split(":-")[-1].rstrip("}")) > 0
    assert "minio" in services and services["web"]["depends_on"]["minio-bucket"] == {
        "condition": "service_completed_successfully"}


def test_gunicorn_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = DOCKER / "gunicorn.conf.py"
    assert "--config gunicorn.conf.py" in (DOCKER / "entrypoint.sh").read_text()
    assert "COPY docker/gunicorn.conf.py ./" in (DOCKER / "Dockerfile").read_text()
    monkeypatch.delenv("GUNICORN_WORKERS", raising=False)
    monkeypatch.delenv("GUNICORN_THREADS", raising=False)
    defaults = runpy.run_path(str(conf))
    assert defaults["worker_class"] == "gthread"
    assert (defaults["workers"], defaults["threads"]) == (2 * defaults["cores"], 8)
    monkeypatch.setenv("GUNICORN_WORKERS", "3")
    monkeypatch.setenv("GUNICORN_THREADS", "5")
    chosen = runpy.run_path(str(conf))
    assert (chosen["workers"], chosen["threads"]) == (3, 5)
    monkeypatch.setenv("GUNICORN_THREADS", "0")
    with pytest.raises(SystemExit, match="GUNICORN_THREADS"):
        runpy.run_path(str(conf))
