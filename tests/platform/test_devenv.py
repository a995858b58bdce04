"""`make demo`/`make test` service start-up: bad URLs stop with one line, not a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def _processes_under(folder: Path) -> list[str]:
    """Command lines of the live processes that mention ``folder`` (the embedded servers' data lives there)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if str(folder) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(cmdline)
    return found


@pytest.mark.parametrize("signals", [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGTERM)])
def test_two_signals_stop_the_command_and_the_embedded_servers(tmp_path: Path, signals: tuple[int, int]) -> None:
    # As `make` under a Ctrl-C or SIGTERM: one signal to the process group, another to devenv itself
    # while it is cleaning up. No embedded PostgreSQL or Redis (nor the command) may outlive it.
    var = tmp_path / "var"
    started = tmp_path / "started"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["SUA_VAR_DIR"] = str(var)
    command = [sys.executable, "-c", f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(600)"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "devenv.py"), "run", "--", *command],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the embedded services did not start in 2 minutes"
            time.sleep(0.2)
        assert _processes_under(var), "expected embedded PostgreSQL and Redis under the temporary folder"
        os.killpg(proc.pid, signals[0])
        time.sleep(0.3)  # devenv is stopping the command and the servers now
        if proc.poll() is None:
            proc.send_signal(signals[1])
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # (The command itself may print its own KeyboardInterrupt; devenv must not die in its cleanup.)
    assert 'devenv.py", line' not in (proc.stderr.read().decode() if proc.stderr else "")
    deadline = time.monotonic() + 10
    while _processes_under(var) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_under(var) == []
