"""Benchmark: DeepZoom tiles through the Django endpoint vs large-image's ``getTile`` called directly.

A pyramidal TIFF (JPEG tiles) is stored as a slide: a synthetic one rendered
here (``--size``, 8192 square by default) or an existing file (``--slide``, a
band of the Camelyon-size slide, say). A real server (gunicorn with production's
settings, docker/gunicorn.conf.py: gthread workers, as many and with as many
threads as it chooses unless ``--workers`` / ``--threads`` say otherwise) serves
``/api/slides/{id}/dzi_files/...`` to 16 concurrent clients (threads, one
keep-alive HTTP connection each, token authentication). Every request
checks the caller's membership in the slide's project: from Django's cache
(local memory per process, for SLIDE_IMAGE_ACCESS_CACHE_SECONDS), from the
database when it misses. The floor is the same tile list read by ``getTile``
in this process with the same threads.

The tile list: ``--tiles`` tiles (2,000) drawn at random from all the tiles of
the three finest DeepZoom levels, so each level comes in its share (about 4/7,
2/7 and 1/7), or all of them when there are fewer (the 8192^2 slide has 1,344;
a Camelyon slide's three finest levels have about 400,000, a 98,000 x 8,192
band of it about 16,000). Both start cold (a fresh server, a fresh source and
tile cache) and read the list once, in the same random order; a second, warm
pass reads it again (large-image's tile cache then answers). Measured with 1
client (the per-request latency) and with 16. Printed: p50 / p95 / mean latency
and throughput of each, and the ratios.

large-image's tile cache holds (memory / 32) / 512 KiB tiles per process
(1,506 on a 23.5 GiB machine), least recently used first out: a list longer
than that leaves the warm pass about as cold as the first.

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

``--sweep`` (or several values of ``--workers`` or ``--threads``; ``--sweep``
alone: workers 1, 2, 4 x threads 4, 8, 16) serves the same list to
``--clients`` clients with every combination, cold pass only, each on a fresh
server; ``--repeat 2`` runs the grid again in reverse order, so that a change in
the machine's load favours neither end of it. The floor (getTile, same
clients, cold) runs once. This is how docker/gunicorn.conf.py's defaults were
chosen (its docstring has the table).

Measured 2026-12-02 on 2 cores shared with other work (one run each, noisy):
2,000 tiles of the 16,096 of the three finest levels of a 98,000 x 8,192 band
of the Camelyon-size slide through the macro- and micro-metastasis (``python -m
analysis.synthetic large var/large-band --rows 111872 120064``; its tiles pass
through without re-encoding), gunicorn 4 workers x 8 threads::

    clients  pass   endpoint p50 / mean ms   getTile p50 / mean ms   p50 ratio  mean ratio  throughput
          1  cold        5.1 / 5.3                1.9 / 1.9               2.7x        2.8x       0.36x
          1  warm        5.0 / 5.2                1.6 / 1.7               3.2x        3.2x       0.32x
         16  cold       36.6 / 40.2               2.2 / 28.5             16.5x        1.4x       0.72x
         16  warm       29.0 / 31.4               2.0 / 6.3              14.4x        5.0x       0.94x

With 16 threads the floor's p50 is that of the GIL convoy (its mean is 13x its
p50): the endpoint's mean is within 1.4x of getTile's and its throughput 0.72x,
cold. With 1 client the endpoint adds about 3 ms a tile (HTTP, Django, the
client) to getTile's 2.

Run (starts embedded PostgreSQL when DATABASE_URL is not set)::

    .venv/bin/python benchmarks/bench_tiles.py [--size 8192 | --slide PATH] [--tiles 2000] [--clients 16]
        [--workers N ...] [--threads N ...] [--sweep] [--repeat 1]
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import itertools
import os
import random
import runpy
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: gunicorn's production settings (docker/entrypoint.sh starts the web server with them).
GUNICORN_CONF = ROOT / "docker" / "gunicorn.conf.py"
#: The grid ``--sweep`` measures when ``--workers`` and ``--threads`` give one value each.
SWEEP_WORKERS = (1, 2, 4)
SWEEP_THREADS = (4, 8, 16)

#: The floor of earlier measurements: getTile in this process, one thread per client (one GIL for all).
ONE_PROCESS = "1 process"
_ORDER = {"endpoint": 0, "getTile": 1, ONE_PROCESS: 2}

#: A DeepZoom tile: (level, column, row).
Job = tuple[int, int, int]
#: Latencies (s), wall time (s) and bytes of one pass.
Pass = tuple[list[float], float, int]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentiles(samples: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def sample_tiles(grids: Sequence[tuple[int, int, int]], n: int, *, seed: int = 0) -> list[Job]:
    """``n`` different tiles drawn uniformly from all the tiles of ``grids``, in random order.

    ``grids``: (level, columns, rows) of each level. All the tiles (shuffled) when
    there are ``n`` or fewer. Tiles are numbered level by level, column by column,
    and only the drawn numbers are turned into tiles: a Camelyon slide's 400,000
    are never listed.
    """
    sizes = [cols * rows for _, cols, rows in grids]
    starts = list(itertools.accumulate(sizes, initial=0))
    jobs = []
    for number in random.Random(seed).sample(range(starts[-1]), min(n, starts[-1])):
        k = bisect.bisect_right(starts, number) - 1
        level, _, rows = grids[k]
        col, row = divmod(number - starts[k], rows)
        jobs.append((level, col, row))
    return jobs


def _run(jobs: Sequence[Job], clients: int, fetchers: Sequence[Callable[[Job], int]]) -> Pass:
    """Fetch every job once with ``clients`` threads, each using one of ``fetchers`` (one per client).

    Returns latencies (s), wall time (s) and bytes. The fetchers outlive a pass, so an HTTP client keeps
    its connection (and so its server process) from the cold pass to the warm one.
    """
    local = threading.local()
    free = list(fetchers)
    latencies: list[float] = []
    lock = threading.Lock()
    total = [0]

    def one(job: Job) -> None:
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


@contextmanager
def serving(workers: int, threads: int) -> Iterator[int]:
    """A fresh gunicorn with production's settings and these workers and threads; yields its port."""
    port = _free_port()
    # Keep-alive as long as a run: each client keeps its connection (and worker) from the cold pass to the warm.
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "sua_portal.wsgi:application", "-c", str(GUNICORN_CONF),
         "-b", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
         "--keep-alive", "30", "--log-level", "warning"],
        cwd=ROOT, env=dict(os.environ),
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


def _endpoint_fetchers(port: int, slide_id: int, headers: dict[str, str], clients: int,
                       warm_up: int) -> list[Callable[[Job], int]]:
    """One fetcher (one keep-alive connection) per client, after ``warm_up`` descriptor requests."""
    for _ in range(warm_up):
        # Each on a new connection, so that the workers open the slide before the clock starts.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", f"/api/slides/{slide_id}/dzi.dzi", headers=headers)
        conn.getresponse().read()
        conn.close()

    def fetcher() -> Callable[[Job], int]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def fetch(job: Job) -> int:
            level, col, row = job
            conn.request("GET", f"/api/slides/{slide_id}/dzi_files/{level}/{col}_{row}.jpeg", headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"tile {job}: HTTP {response.status} {body[:200]!r}")
            return len(body)

        return fetch

    return [fetcher() for _ in range(clients)]


def _floor_fetchers(stored: Path, clients: int) -> list[Callable[[Job], int]]:
    """``getTile`` in this process, one fresh source (noCache: its own, empty tile cache) shared by the clients.

    The floor of earlier measurements, kept for reference: with several clients its threads share one
    GIL, which serialises them (see the module's docstring).
    """
    import large_image

    from sua_portal.slides import tiles

    source = large_image.open(str(stored), encoding="JPEG", jpegQuality=tiles.JPEG_QUALITY, noCache=True)
    offset = tiles.DeepZoom(source).offset

    def fetch(job: Job) -> int:
        level, col, row = job
        return len(bytes(source.getTile(col, row, level - offset)))

    return [fetch] * clients


def _floor_process(stored: str, clients: int, threads: int, jobs: Sequence[Job], passes: int,
                   counter: Any, start: Any, done: Any) -> None:
    """One process of the fair floor: its own cold source, ``clients`` clients, ``threads`` at a time.

    For each of ``passes`` passes: wait at ``start`` (every process and the parent), then each client
    takes the next job from the shared ``counter`` until the list is done (as the endpoint's clients
    take the next tile when theirs is answered), and the process puts its latencies (s, from taking
    the job, so waiting for a thread counts, as it does in a gunicorn worker), its wall time (s) and
    bytes on ``done``.
    """
    import large_image

    from sua_portal.slides import tiles

    source = large_image.open(stored, encoding="JPEG", jpegQuality=tiles.JPEG_QUALITY, noCache=True)
    offset = tiles.DeepZoom(source).offset
    free_threads = threading.Semaphore(threads)
    lock = threading.Lock()

    def client(latencies: list[float], total: list[int]) -> None:
        while True:
            with counter.get_lock():
                index = counter.value
                counter.value += 1
            if index >= len(jobs):
                return
            level, col, row = jobs[index]
            began = time.perf_counter()
            with free_threads:
                size = len(bytes(source.getTile(col, row, level - offset)))
            elapsed = time.perf_counter() - began
            with lock:
                latencies.append(elapsed)
                total[0] += size

    for _ in range(passes):
        latencies: list[float] = []
        total = [0]
        start.wait()
        began = time.perf_counter()
        workers = [threading.Thread(target=client, args=(latencies, total)) for _ in range(clients)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        done.put((latencies, time.perf_counter() - began, total[0]))


def _fair_floor(stored: Path, jobs: Sequence[Job], clients: int, workers: int, threads: int,
                passes: int = 2) -> list[Pass]:
    """``getTile`` laid out as the server: ``workers`` processes (spawned, each with its own cold source)
    of ``threads`` threads, the ``clients`` clients spread over them (client ``c`` in process
    ``c % workers``; no process without a client), all taking the next tile from one shared list.

    Returns one :data:`Pass` per pass (cold, then warm), latencies of every process together, the wall
    time of the slowest.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    processes = min(workers, clients)
    counter = context.Value("l", 0)
    start = context.Barrier(processes + 1)
    done = context.Queue()
    shares = [len(range(p, clients, processes)) for p in range(processes)]
    children = [context.Process(target=_floor_process, daemon=True,
                                args=(str(stored), share, threads, list(jobs), passes, counter, start, done))
                for share in shares]
    for child in children:
        child.start()
    results: list[Pass] = []
    try:
        for _ in range(passes):
            with counter.get_lock():
                counter.value = 0
            start.wait(timeout=300)
            parts = [done.get(timeout=3600) for _ in children]
            results.append(([t for part in parts for t in part[0]], max(part[1] for part in parts),
                            sum(part[2] for part in parts)))
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    return results


def _row(label: str, run: Pass, floor: Pass | None = None) -> str:
    latencies, wall, _ = run
    p50, p95 = _percentiles(latencies)
    text = f"{label} {p50 * 1e3:8.2f} {p95 * 1e3:8.2f} {statistics.fmean(latencies) * 1e3:8.2f} {len(latencies) / wall:8.0f}"
    if floor is not None:
        mean_ratio = statistics.fmean(latencies) / statistics.fmean(floor[0])
        text += f" {p50 / _percentiles(floor[0])[0]:9.1f}x {mean_ratio:9.1f}x {floor[1] / wall:9.2f}x"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    slide_args = parser.add_mutually_exclusive_group()
    slide_args.add_argument("--size", type=int, default=8192, help="width and height of the synthetic slide (px)")
    slide_args.add_argument("--slide", type=Path, help="serve this slide file instead of a synthetic one")
    parser.add_argument("--tiles", type=int, default=2000, help="tiles drawn from the finest levels (all if fewer)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", help="gunicorn worker processes (default: production's)")
    parser.add_argument("--threads", type=int, nargs="+", help="threads per worker (default: production's)")
    parser.add_argument("--sweep", action="store_true", help="every workers x threads, cold, at --clients clients")
    parser.add_argument("--repeat", type=int, default=1, help="sweep runs (every other one in reverse order)")
    parser.add_argument("--levels", type=int, default=3, help="finest DeepZoom levels to read")
    args = parser.parse_args(argv)
    if args.slide is not None and not args.slide.is_file():
        parser.error(f"--slide {args.slide}: no such file")
    if args.tiles < 1 or args.clients < 1 or args.repeat < 1 or args.levels < 1:
        parser.error("--tiles, --clients, --repeat and --levels must be at least 1")
    if any(n < 1 for n in (args.workers or []) + (args.threads or [])):
        parser.error("--workers and --threads must be at least 1")
    sweep = args.sweep or len(args.workers or []) > 1 or len(args.threads or []) > 1

    if not os.environ.get("DATABASE_URL"):
        # Same services as the tests: let devenv start embedded PostgreSQL and Redis, then run again.
        return subprocess.call([sys.executable, str(ROOT / "scripts" / "devenv.py"), "run", "--",
                                sys.executable, __file__, *(argv or sys.argv[1:])], cwd=ROOT)

    production = runpy.run_path(str(GUNICORN_CONF))
    if sweep:
        workers_grid = args.workers if args.workers and len(args.workers) > 1 else list(SWEEP_WORKERS)
        threads_grid = args.threads if args.threads and len(args.threads) > 1 else list(SWEEP_THREADS)
    else:
        workers_grid = args.workers or [int(production["workers"])]
        threads_grid = args.threads or [int(production["threads"])]

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
    if args.slide is not None:
        slide_path = args.slide
    else:
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
    headers = {"Authorization": f"Token {token.key}"}
    results: dict[tuple[int, str, str], Pass] = {}
    grid: dict[tuple[int, int], list[Pass]] = {}
    floors: dict[tuple[int, int], Pass] = {}
    try:
        slide = services.store_slide(cohort, slide_path, filename=slide_path.name, queue_check=False)
        services.check_slide(slide.pk)
        stored = services.local_path(slide)
        zoom = tiles.DeepZoom(large_image.open(str(stored), encoding="JPEG", jpegQuality=tiles.JPEG_QUALITY,
                                               noCache=True))
        levels = range(max(0, zoom.max_level - args.levels + 1), zoom.max_level + 1)
        grids = [(level, *zoom.tile_grid(level)) for level in levels]
        jobs = sample_tiles(grids, args.tiles)
        width, height, tile_size = zoom.width, zoom.height, zoom.tile_size
        del zoom

        if sweep:
            order = list(itertools.product(workers_grid, threads_grid))
            for attempt in range(args.repeat):
                for workers, threads in order if attempt % 2 == 0 else order[::-1]:
                    with serving(workers, threads) as port:
                        fetchers = _endpoint_fetchers(port, slide.pk, headers, args.clients, workers * threads)
                        grid.setdefault((workers, threads), []).append(_run(jobs, args.clients, fetchers))
                    print(f"  {workers} workers x {threads} threads: done", flush=True)
            for workers, threads in order:
                floors[(workers, threads)] = _fair_floor(stored, jobs, args.clients, workers, threads, passes=1)[0]
            results[(args.clients, ONE_PROCESS, "cold")] = _run(jobs, args.clients,
                                                                _floor_fetchers(stored, args.clients))
        else:
            workers, threads = workers_grid[0], threads_grid[0]
            for clients in sorted({1, args.clients}):
                # A fresh server (cold caches) per setting, warmed up on the descriptor only.
                with serving(workers, threads) as port:
                    fetchers = _endpoint_fetchers(port, slide.pk, headers, clients, workers * threads)
                    for phase in ("cold", "warm"):
                        results[(clients, "endpoint", phase)] = _run(jobs, clients, fetchers)
                cold, warm = _fair_floor(stored, jobs, clients, workers, threads)
                results[(clients, "getTile", "cold")], results[(clients, "getTile", "warm")] = cold, warm
                fetchers = _floor_fetchers(stored, clients)
                for phase in ("cold", "warm"):
                    results[(clients, ONE_PROCESS, phase)] = _run(jobs, clients, fetchers)
    finally:
        Cohort.objects.filter(project=project).delete()
        project.delete()
        user.delete()
        shutil.rmtree(work, ignore_errors=True)

    mix = ", ".join(f"{sum(1 for job in jobs if job[0] == level)} of level {level}" for level in levels)
    print(f"\n{len(jobs)} tiles ({mix}) of the {len(grids)} finest DeepZoom levels "
          f"({sum(cols * rows for _, cols, rows in grids)} tiles) of a {width} x {height} slide "
          f"({tile_size} px JPEG tiles); {os.cpu_count()} CPUs")
    if sweep:
        print(f"{args.clients} clients, cold pass, each configuration on a fresh server; "
              f"{args.repeat} run(s) of each, the best p50 shown; the floor: getTile in as many "
              "processes and threads\n")
        print(f"{'workers':>7} {'threads':>7} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'tiles/s':>8} "
              f"{'p50/floor':>10} {'mean/floor':>10} {'tput/floor':>10}  p50 of each run; floor p50 / mean ms")
        for (workers, threads), runs in grid.items():
            best = min(runs, key=lambda run: _percentiles(run[0])[0])
            floor = floors[(workers, threads)]
            each = " ".join(f"{_percentiles(run[0])[0] * 1e3:.1f}" for run in runs)
            print(_row(f"{workers:7d} {threads:7d}", best, floor) + f"  {each}; "
                  f"{_percentiles(floor[0])[0] * 1e3:.2f} / {statistics.fmean(floor[0]) * 1e3:.2f}")
        print(_row(f"{ONE_PROCESS:>15}", results[(args.clients, ONE_PROCESS, "cold")]))
        return 0
    print(f"server: gunicorn {workers_grid[0]} workers x {threads_grid[0]} threads; getTile: as many processes "
          f"(at most one per client) x threads; {ONE_PROCESS}: getTile in this process, a thread per client\n")
    print(f"{'clients':>7} {'':9} {'pass':5} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'tiles/s':>8}")
    for (clients, name, phase), run in sorted(results.items(), key=lambda item: (item[0][0], _ORDER[item[0][1]])):
        print(_row(f"{clients:7d} {name:9} {phase:5}", run))
    print()
    for clients in sorted({1, args.clients}):
        for phase in ("cold", "warm"):
            endpoint = results[(clients, "endpoint", phase)]
            ratios = []
            for name in ("getTile", ONE_PROCESS):
                floor = results[(clients, name, phase)]
                ratios.append(f"{name}: p50 {_percentiles(endpoint[0])[0] / _percentiles(floor[0])[0]:.1f}x, "
                              f"mean {statistics.fmean(endpoint[0]) / statistics.fmean(floor[0]):.1f}x, "
                              f"throughput {floor[1] / endpoint[1]:.2f}x")
            print(f"{clients:2d} clients, {phase}: endpoint / {ratios[0]} (/ {ratios[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
