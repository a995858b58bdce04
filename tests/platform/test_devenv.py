"""`make demo`/`make test` service start-up: bad URLs stop with one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _devenv(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(env_extra)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "devenv.py"), "run", "--", "true"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_a_wrong_database_url_stops_with_one_line_naming_it() -> None:
    done = _devenv({"DATABASE_URL": "postgres://postgres@127.0.0.1:1/nothing",
                    "CELERY_BROKER_URL": os.environ["CELERY_BROKER_URL"]})
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "DATABASE_URL" in lines[0]
    assert "Traceback" not in done.stderr


def test_an_unreachable_broker_stops_with_one_line_naming_it() -> None:
    done = _devenv({"DATABASE_URL": os.environ["DATABASE_URL"], "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert done.returncode == 2
    assert "CELERY_BROKER_URL" in done.stderr and "Traceback" not in done.stderr


def test_a_database_url_of_another_engine_is_refused() -> None:
    done = _devenv({"DATABASE_URL": "sqlite:///x.db", "CELERY_BROKER_URL": os.environ["CELERY_BROKER_URL"]})
    assert done.returncode == 2 and "must name PostgreSQL" in done.stderr
