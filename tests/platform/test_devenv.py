"""`make demo`/`make test` service start-up: bad URLs stop with one line, not a traceback."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def _devenv_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("devenv", ROOT / "scripts" / "devenv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_builds_lines_reach_the_terminal_with_progress_thinned(capsys: pytest.CaptureFixture[str]) -> None:
    # `make demo` shows the build's steps as they come, but an epoch or a slide only every so often.
    devenv = _devenv_module()
    lines = [
        "Generating the synthetic 'demo' cohort into var/demo-cohort-demo (once) ...",
        *[f"slides: {i} of 24 generated" for i in range(1, 25)],
        "Demo cohorts in 'Demo': Demo train, Demo validation (24 slides, 80 s)",
        *[f"training: member {m} of 5, epoch {e} of 12 (validation Dice 0.9)" for e in range(1, 13) for m in range(1, 6)],
        "The demo run's dashboard: /runs/1/",
    ]
    stream = io.BytesIO("".join(line + "\n" for line in lines).encode())
    devenv._echo_build(stream, time.monotonic())
    shown = [re.sub(r"^\s*demo\s+\d+:\d\d  ", "", line) for line in capsys.readouterr().out.splitlines()]
    # Every line that is not progress, in order; of the 84 progress lines the first of each step (they all
    # came at once: the next would be due PROGRESS_EVERY seconds later).
    assert shown == [lines[0], "slides: 1 of 24 generated", lines[25],
                     "training: member 1 of 5, epoch 1 of 12 (validation Dice 0.9)", lines[-1]]
