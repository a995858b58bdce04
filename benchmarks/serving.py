"""What the web benchmarks share (bench_tiles, bench_viewer): gunicorn with production's settings on a free
port, and the p50 / p95 they print. Not a benchmark itself (``make benchmarks`` runs ``bench_*.py``)."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: gunicorn's production settings (docker/entrypoint.sh starts the web server with them).
GUNICORN_CONF = ROOT / "docker" / "gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    """p50 and p95 (nearest rank) of the samples; NaN for none."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan"), float("nan")
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@contextmanager
def gunicorn(env: dict[str, str], *options: str) -> Iterator[int]:
    """gunicorn serving the portal with docker/gunicorn.conf.py and these extra command-line ``options``
    (``--workers``, ``--threads``, ...); yields its port once it accepts connections, stops it after."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "sua_portal.wsgi:application", "-c", str(GUNICORN_CONF),
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", *options],
        cwd=ROOT, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
