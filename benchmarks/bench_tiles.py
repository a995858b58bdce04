"""Benchmark: DeepZoom tiles through the Django endpoint vs large-image's ``getTile`` called directly.

A synthetic pyramidal TIFF (JPEG tiles) is stored as a slide; a real server
(gunicorn, gthread workers: by default one process per CPU, 8 threads each)
serves ``/api/slides/{id}/dzi_files/...`` to 16 concurrent clients (threads,
one keep-alive HTTP connection each, token authentication). Every request
checks the caller's membership in the slide's project: from Django's cache
(local memory per process, for SLIDE_IMAGE_ACCESS_CACHE_SECONDS), from the
database when it misses. The floor is the same tile list read by ``getTile``
in this process with the same threads. Both start cold (a fresh server, a
fresh source and tile cache) and read every tile of the three finest levels
once, in the same shuffled order; a second, warm pass reads them again
(large-image's tile cache then answers). Measured with 1 client (the
per-request latency) and with 16. Printed: p50 / p95 / mean latency and
throughput of each, and the ratios.

Each client keeps its connection for both passes, so with 1 client the warm
pass reaches the worker process whose cache the cold pass filled. With several
workers and 16 clients a tile of the warm pass may reach another worker than
in the cold pass: each process has its own tile cache, so the endpoint's warm
pass is partly cold there, while the floor's (one process) is not. A warm
floor is a dictionary lookup (microseconds), so no HTTP round trip comes
within 2x of it: the cold pass is the comparison that says what the endpoint
adds to reading a tile.

With 16 threads in one process the floor's p50 is flattered by the GIL: a
thread that holds it runs many getTile calls back to back while the others
wait (p50 well under a millisecond, p95 tens of milliseconds), so compare the
mean and the throughput there as well.

Run (starts embedded PostgreSQL when DATABASE_URL is not set)::

    .venv/bin/python benchmarks/bench_tiles.py [--size 8192] [--clients 16] [--workers N] [--threads 8]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentiles(samples: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _run(jobs: Sequence[tuple[int, int, int]], clients: int,
         fetchers: Sequence[Callable[[tuple[int, int, int]], int]]) -> tuple[list[float], float, int]:
    """Fetch every job once with ``clients`` threads, each using one of ``fetchers`` (one per client).

    Returns latencies (s), wall time (s) and bytes. The fetchers outlive a pass, so an HTTP client keeps
    its connection (and so its server process) from the cold pass to the warm one.
    """
    local = threading.local()
    free = list(fetchers)
    latencies: list[float] = []
    lock = threading.Lock()
    total = [0]

    def one(job: tuple[int, int, int]) -> None:
        if not hasattr(local, "fetch"):
            with lock:
                local.fetch = free.pop()
        start = time.perf_counter()
        size = local.fetch(job)
        elapsed = time.perf_counter() - start
        with lock:
            latencies.append(elapsed)
            total[0] += size

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, jobs))
    return latencies, time.perf_counter() - start, total[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=8192, help="slide width and height in pixels")
    parser.add_argument("--clients", type=int, default=16)
    # One gthread worker process per CPU: Python runs one thread at a time per process (the GIL).
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--levels", type=int, default=3, help="finest DeepZoom levels to read")
    args = parser.parse_args(argv)

    if not os.environ.get("DATABASE_URL"):
        # Same services as the tests: let devenv start embedded PostgreSQL and Redis, then run again.
        return subprocess.call([sys.executable, str(ROOT / "scripts" / "devenv.py"), "run", "--",
                                sys.executable, __file__, *(argv or sys.argv[1:])], cwd=ROOT)

    work = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    os.environ.setdefault("SECRET_KEY", "bench-tiles-secret-key")
    os.environ["MEDIA_ROOT"] = str(work / "media")
    os.environ["DJANGO_SETTINGS_MODULE"] = "sua_portal.settings"
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    import large_image
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from analysis.synthetic import SlideSpec, generate_slide
    from sua_portal.accounts.models import Membership, Project
    from sua_portal.slides import services, tiles
    from sua_portal.slides.models import Cohort

    call_command("migrate", verbosity=0)
    print(f"Rendering a {args.size} x {args.size} synthetic slide ...", flush=True)
    slide_path = work / "bench.tiff"
    generate_slide(SlideSpec(seed=7, width=args.size, height=args.size, mpp=0.5, tile_size=256), slide_path)

    from django.contrib.auth import get_user_model

    User = get_user_model()
    user, _ = User.objects.get_or_create(username="bench-tiles")
    project, _ = Project.objects.get_or_create(name="bench-tiles")
    Membership.objects.get_or_create(project=project, user=user)
    token, _ = Token.objects.get_or_create(user=user)
    Cohort.objects.filter(project=project).delete()
    cohort = Cohort.objects.create(project=project, name="bench", split="test")
    slide = services.store_slide(cohort, slide_path, filename="bench.tiff", queue_check=False)
    services.check_slide(slide.pk)
    stored = services.local_path(slide)

    zoom = tiles.DeepZoom(large_image.open(str(stored), encoding="JPEG", jpegQuality=tiles.JPEG_QUALITY,
                                           noCache=True))
    jobs = [
        (level, col, row)
        for level in range(zoom.max_level - args.levels + 1, zoom.max_level + 1)
        for col in range(zoom.tile_grid(level)[0])
        for row in range(zoom.tile_grid(level)[1])
    ]
    random.Random(0).shuffle(jobs)
    del zoom

    def serve() -> tuple[subprocess.Popen[bytes], int]:
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "sua_portal.wsgi:application", "-b", f"127.0.0.1:{port}",
             "-k", "gthread", "--workers", str(args.workers), "--threads", str(args.threads),
             "--keep-alive", "30", "--log-level", "warning"],
            cwd=ROOT, env=dict(os.environ),
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return server, port
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    server.kill()
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)

    headers = {"Authorization": f"Token {token.key}"}
    results: dict[tuple[int, str, str], tuple[list[float], float, int]] = {}
    try:
        for clients in sorted({1, args.clients}):
            # A fresh server (cold caches) per setting, warmed up on the descriptor only.
            server, port = serve()
            try:
                for _ in range(args.workers * args.threads):
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    conn.request("GET", f"/api/slides/{slide.pk}/dzi.dzi", headers=headers)
                    conn.getresponse().read()

                def http_fetcher(port: int = port) -> Callable[[tuple[int, int, int]], int]:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

                    def fetch(job: tuple[int, int, int]) -> int:
                        level, col, row = job
                        conn.request("GET", f"/api/slides/{slide.pk}/dzi_files/{level}/{col}_{row}.jpeg",
                                     headers=headers)
                        response = conn.getresponse()
                        body = response.read()
                        if response.status != 200:
                            raise RuntimeError(f"tile {job}: HTTP {response.status} {body[:200]!r}")
                        return len(body)

                    return fetch

                endpoint_fetchers = [http_fetcher() for _ in range(clients)]
                for phase in ("cold", "warm"):
                    results[(clients, "endpoint", phase)] = _run(jobs, clients, endpoint_fetchers)
            finally:
                server.terminate()
                server.wait(timeout=20)
            # The floor: a fresh source (noCache: its own, empty tile cache) in this process.
            source = large_image.open(str(stored), encoding="JPEG", jpegQuality=tiles.JPEG_QUALITY, noCache=True)
            offset = tiles.DeepZoom(source).offset

            def direct_fetcher(source: Any = source, offset: int = offset) -> Callable[[tuple[int, int, int]], int]:
                def fetch(job: tuple[int, int, int]) -> int:
                    level, col, row = job
                    return len(bytes(source.getTile(col, row, level - offset)))

                return fetch

            direct_fetchers = [direct_fetcher() for _ in range(clients)]
            for phase in ("cold", "warm"):
                results[(clients, "getTile", phase)] = _run(jobs, clients, direct_fetchers)
    finally:
        Cohort.objects.filter(project=project).delete()
        project.delete()
        user.delete()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{len(jobs)} tiles of the {args.levels} finest DeepZoom levels of a {args.size}^2 slide "
          f"(256 px JPEG tiles); server: gunicorn {args.workers} workers x {args.threads} threads, "
          f"{os.cpu_count()} CPUs\n")
    print(f"{'clients':>7} {'':9} {'pass':5} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'tiles/s':>8}")
    for (clients, name, phase), (latencies, wall, _) in results.items():
        p50, p95 = _percentiles(latencies)
        print(f"{clients:7d} {name:9} {phase:5} {p50 * 1e3:8.2f} {p95 * 1e3:8.2f} "
              f"{statistics.fmean(latencies) * 1e3:8.2f} {len(latencies) / wall:8.0f}")
    print()
    for clients in sorted({1, args.clients}):
        for phase in ("cold", "warm"):
            endpoint, floor = results[(clients, "endpoint", phase)], results[(clients, "getTile", phase)]
            p50_ratio = _percentiles(endpoint[0])[0] / _percentiles(floor[0])[0]
            mean_ratio = statistics.fmean(endpoint[0]) / statistics.fmean(floor[0])
            print(f"{clients:2d} clients, {phase}: endpoint / getTile latency p50 {p50_ratio:.1f}x, mean "
                  f"{mean_ratio:.1f}x; endpoint throughput {floor[1] / endpoint[1]:.2f}x getTile's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
