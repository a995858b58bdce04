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
database when it misses.

The floor is the same tile list read by large-image's ``getTile`` laid out as
the server: as many processes as gunicorn has workers (at most one per client),
each spawned with its own cold source, the clients spread over them (client
``c`` in process ``c % workers``) with at most as many at a time as a worker
has threads, every client taking the next tile of one shared list when it has
its last one, as the endpoint's clients do. The floor of earlier measurements,
getTile in this process with a thread per client (one GIL for all), is printed
as "1 process" for reference, and getTile with no GIL shared at all, a process
of one thread per client, as "per client" (on a machine with fewer cores than
clients its p50 is the unloaded read: the scheduler runs each process for a
time slice, in which it reads several tiles back to back, then leaves it
waiting: a few slow tiles and many fast ones, the mean telling the load).

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
pass is partly cold there, and so is the floor's (each of its processes has
its own cache too; the one-process floor's is not). A warm
floor is a dictionary lookup (microseconds), so no HTTP round trip comes
within 2x of it: the cold pass is the comparison that says what the endpoint
adds to reading a tile.

Every client runs a closed loop and a tile's latency runs from the client's
previous answer to this one (see ``_client``), so a pass's mean latency is
clients / throughput for the endpoint and both floors alike. Timed only
around the call, as before 2026-12-03, a floor's waits for the GIL fell
between two timings: even the floor in 4 processes x 4 clients had a p50 of
1.3-1.6 ms at 16 clients while its throughput said 16 tiles in flight took
14-52 ms (its mean was 3.5-37 ms). The p50 of a floor at 16 clients on 2
cores is still not a latency to compare with: in a process of threads one
that holds the GIL reads many tiles back to back while the others wait, so
half the tiles come fast and the rest very slow, and from run to run of the
same code that p50 went from 1.3 to 18 ms (see the table). The endpoint's
requests take turns through sockets and gunicorn's queue, so its p50 is near
its mean. Compare the mean (and the throughput) at 16 clients.

``--sweep`` (or several values of ``--workers`` or ``--threads``; ``--sweep``
alone: workers 1, 2, 4 x threads 4, 8, 16) serves the same list to
``--clients`` clients with every combination, cold pass only, each on a fresh
server; ``--repeat 2`` runs the grid again in reverse order, so that a change in
the machine's load favours neither end of it. The floor (getTile, same
clients, cold) runs once for each configuration, laid out as that one (and the
one-process floor once). This is how docker/gunicorn.conf.py's defaults were
chosen (its docstring has the table, measured against the one-process floor).

Measured 2026-12-04 (2 cores, the machine otherwise quiet), band (b), gunicorn
4 x 8, cold pass, two runs, after the endpoint began passing the file's own
JPEG tiles through where each is a complete YCbCr JPEG (the synthetic slides,
tifffile's writing: ``tiles.RawJPEGTiles``; large-image's getTile decodes and
encodes those again, 0.85 ms a tile; reading one is 0.015 ms), p50 / mean ms::

    clients  code      endpoint       getTile (server's layout)  per client     p50 ratio  mean ratio  tiles/s
       1     before   1.69 / 1.73     0.85 / 0.85                0.85 / 0.85      2.0x       2.0x        577
       1     after    0.50 / 0.54     0.87 / 0.87                0.87 / 0.87      0.6x       0.6x       1849
       1     after    0.59 / 0.61     0.84 / 0.83                0.84 / 0.83      0.7x       0.7x       1649
      16     before  12.67 / 14.56    5.85 / 8.18                1.07 / 8.54      2.2x       1.8x       1087
      16     after    3.69 / 4.68     6.78 / 8.32                1.21 / 9.44      0.5x       0.6x       3327
      16     after    3.66 / 4.46     4.48 / 8.07                1.13 / 9.00      0.8x       0.6x       3493

(ratios against getTile laid out as the server; against "per client" the
p50 ratio is 3.0-3.2x, its mean ratio 0.5x).  The figures below are the
code before that change.

Measured 2026-12-03 on 2 cores shared with other work (load average 7-10
throughout: every figure is noisy, so each was measured twice), gunicorn 4
workers x 8 threads, cold pass; (a) the 1,344 tiles of the three finest
levels of the 8192^2 synthetic slide, (b) 2,000 tiles of the 16,096 of the
three finest levels of a 98,000 x 8,192 band of the Camelyon-size slide through
the macro- and micro-metastasis (``python -m analysis.synthetic large
var/large-band --rows 111872 120064``: 1 min 24 s, 1.3 GB peak; its tiles are
complete JPEGs, which large-image decodes and encodes again, as for (a)).
"before": the code of 8b13629; "after": the fast path's cached slide as a
named tuple with its file as a string (unpickled in 3 µs instead of 18) and
gunicorn's heartbeat in /dev/shm. p50 / mean ms; ratios endpoint / getTile
(the server's layout)::

    slide  code    run  clients   endpoint       getTile      1 process    p50 ratio  mean ratio
    (a)    before   1      1     2.17 / 2.47    1.06 / 1.74   1.13 / 1.88     2.0x       1.4x
    (a)    before   2      1     2.74 / 7.19    1.07 / 1.84   1.40 / 2.14     2.6x       3.9x
    (a)    after    1      1     2.14 / 3.10    0.97 / 1.12   1.14 / 1.62     2.2x       2.8x
    (a)    after    2      1     2.45 / 3.23    1.10 / 1.86   1.19 / 1.70     2.2x       1.7x
    (b)    before   1      1     2.53 / 3.10    1.42 / 4.11   1.29 / 1.70     1.8x       0.8x
    (b)    before   2      1     2.81 / 3.86    1.40 / 1.58   1.34 / 1.57     2.0x       2.4x
    (b)    after    1      1     2.07 / 2.33    1.16 / 1.18   1.08 / 1.10     1.8x       2.0x
    (b)    after    2      1     2.11 / 2.79    1.16 / 1.67   1.29 / 2.59     1.8x       1.7x
    (a)    before   1     16    22.6 / 39.2    14.2 / 22.9   13.5 / 20.6      1.6x       1.7x
    (a)    before   2     16    22.2 / 26.3    18.3 / 37.6    5.0 / 23.0      1.2x       0.7x
    (a)    after    1     16    38.3 / 43.1     5.3 / 23.4   17.1 / 24.9      7.2x       1.8x
    (a)    after    2     16    24.7 / 30.0     1.3 / 21.6    1.4 / 18.2     18.9x       1.4x
    (b)    before   1     16    25.5 / 28.5    17.0 / 22.6    1.4 / 18.5      1.5x       1.3x
    (b)    before   2     16    31.9 / 34.5    15.3 / 21.0    1.3 / 17.4      2.1x       1.6x
    (b)    after    1     16    19.1 / 26.1    24.3 / 39.5    4.1 / 27.7      0.8x       0.7x
    (b)    after    2     16    34.2 / 38.3     4.0 / 22.8    2.1 / 24.5      8.6x       1.7x

At 16 clients the endpoint's mean is within 0.7-1.8x of getTile's in the
server's layout (the floors' p50 swings between runs of the same code, see
above). At 1 client it is within 1.8-2.2x of getTile at p50 with the machine
at load 7-10 (2.6x once); the 2026-12-02 figures below (5.1 ms against 1.9,
2.7x) are not the code's: the code of that day (0b9075a), run again here,
gave 2.06 and 2.10 ms against 1.17 and 1.11 (1.8x, 1.9x).

Where a 1-client tile's time goes (band, cold, p50 about 2.1 ms): getTile
1.1-1.2 ms; Django's handler and the fast path about 0.13 ms in the process
(a warm tile through the WSGI application: 143-151 µs before, 131 µs after;
the fast path alone 66-70 µs before, 52 µs after, reading the cached slide
15-16 µs before, 9 µs after); the rest is HTTP, of which gunicorn (gthread,
4 x 8) and http.client with a 20 KB answer from a bare WSGI function take
0.28-0.32 ms. A py-spy profile of the worker puts more of its time in
gunicorn's two socket writes (headers, then body) than in Django.

Measured 2026-12-02 (one run each, noisy), band (b), the floor in one
process, each tile timed around its call only::

    clients  pass   endpoint p50 / mean ms   getTile p50 / mean ms   p50 ratio  mean ratio  throughput
          1  cold        5.1 / 5.3                1.9 / 1.9               2.7x        2.8x       0.36x
          1  warm        5.0 / 5.2                1.6 / 1.7               3.2x        3.2x       0.32x
         16  cold       36.6 / 40.2               2.2 / 28.5             16.5x        1.4x       0.72x
         16  warm       29.0 / 31.4               2.0 / 6.3              14.4x        5.0x       0.94x

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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import GUNICORN_CONF, gunicorn, percentiles  # noqa: E402

#: The grid ``--sweep`` measures when ``--workers`` and ``--threads`` give one value each.
SWEEP_WORKERS = (1, 2, 4)
SWEEP_THREADS = (4, 8, 16)

#: The floor of earlier measurements: getTile in this process, one thread per client (one GIL for all).
ONE_PROCESS = "1 process"
#: getTile with no GIL shared: a process (of one thread) per client, as 16 separate readers of the slide would be.
PER_CLIENT = "per client"
_ORDER = {"endpoint": 0, "getTile": 1, PER_CLIENT: 2, ONE_PROCESS: 3}

#: A DeepZoom tile: (level, column, row).
Job = tuple[int, int, int]
#: Latencies (s), wall time (s) and bytes of one pass.
Pass = tuple[list[float], float, int]


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
    its connection (and so its server process) from the cold pass to the warm one. Latencies are
    timed as :func:`_client` says.
    """
    pending = iter(jobs)
    lock = threading.Lock()
    latencies: list[float] = []
    total = [0]

    def take() -> Job | None:
        with lock:
            return next(pending, None)

    def record(elapsed: float, size: int) -> None:
        with lock:
            latencies.append(elapsed)
            total[0] += size

    start = time.perf_counter()
    threads = [threading.Thread(target=_client, args=(take, fetch, record)) for fetch in fetchers[:clients]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - start, total[0]


def _client(take: Callable[[], Job | None], fetch: Callable[[Job], int],
            record: Callable[[float, int], None]) -> None:
    """One client in a closed loop: it asks for the next tile as soon as it has the last one.

    A tile's latency runs from the client's previous answer (or its start) to this answer, so that
    every wait is counted: in the server, for a thread or for the GIL of the process that reads the
    tile, and for this process's own GIL. Timed only around the read, the one-process floor's GIL
    waits fell between two timings (its p50 under a millisecond at 16 clients while the tiles/s said
    16 tiles in flight took tens). So timed, a pass's mean latency is clients / throughput (Little's
    law) for the endpoint and the floors alike.
    """
    ready = time.perf_counter()
    while (job := take()) is not None:
        size = fetch(job)
        now = time.perf_counter()
        record(now - ready, size)
        ready = now


def serving(workers: int, threads: int) -> AbstractContextManager[int]:
    """A fresh gunicorn with production's settings and these workers and threads; yields its port."""
    # Keep-alive as long as a run: each client keeps its connection (and worker) from the cold pass to the warm.
    return gunicorn(dict(os.environ), "--workers", str(workers), "--threads", str(threads), "--keep-alive", "30")


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
    take the next tile when theirs is answered), and the process puts its latencies (s, timed as
    :func:`_client` says; waiting for one of the ``threads`` counts, as it does in a gunicorn worker),
    its wall time (s) and bytes on ``done``.
    """
    import large_image

    from sua_portal.slides import tiles

    source = large_image.open(stored, encoding="JPEG", jpegQuality=tiles.JPEG_QUALITY, noCache=True)
    offset = tiles.DeepZoom(source).offset
    free_threads = threading.Semaphore(threads)
    lock = threading.Lock()

    def take() -> Job | None:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        return jobs[index] if index < len(jobs) else None

    def fetch(job: Job) -> int:
        level, col, row = job
        with free_threads:
            return len(bytes(source.getTile(col, row, level - offset)))

    for _ in range(passes):
        latencies: list[float] = []
        total = [0]

        def record(elapsed: float, size: int, latencies: list[float] = latencies, total: list[int] = total) -> None:
            with lock:
                latencies.append(elapsed)
                total[0] += size

        start.wait()
        began = time.perf_counter()
        clients_here = [threading.Thread(target=_client, args=(take, fetch, record)) for _ in range(clients)]
        for thread in clients_here:
            thread.start()
        for thread in clients_here:
            thread.join()
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
    p50, p95 = percentiles(latencies)
    text = f"{label} {p50 * 1e3:8.2f} {p95 * 1e3:8.2f} {statistics.fmean(latencies) * 1e3:8.2f} {len(latencies) / wall:8.0f}"
    if floor is not None:
        mean_ratio = statistics.fmean(latencies) / statistics.fmean(floor[0])
        text += f" {p50 / percentiles(floor[0])[0]:9.1f}x {mean_ratio:9.1f}x {floor[1] / wall:9.2f}x"
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
                cold, warm = _fair_floor(stored, jobs, clients, clients, 1) if clients > 1 else (cold, warm)
                results[(clients, PER_CLIENT, "cold")], results[(clients, PER_CLIENT, "warm")] = cold, warm
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
            best = min(runs, key=lambda run: percentiles(run[0])[0])
            floor = floors[(workers, threads)]
            each = " ".join(f"{percentiles(run[0])[0] * 1e3:.1f}" for run in runs)
            print(_row(f"{workers:7d} {threads:7d}", best, floor) + f"  {each}; "
                  f"{percentiles(floor[0])[0] * 1e3:.2f} / {statistics.fmean(floor[0]) * 1e3:.2f}")
        print(_row(f"{ONE_PROCESS:>15}", results[(args.clients, ONE_PROCESS, "cold")]))
        return 0
    print(f"server: gunicorn {workers_grid[0]} workers x {threads_grid[0]} threads; getTile: as many processes "
          f"(at most one per client) x threads; {PER_CLIENT}: getTile in a process of one thread per client; "
          f"{ONE_PROCESS}: getTile in this process, a thread per client\n")
    print(f"{'clients':>7} {'':9} {'pass':5} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'tiles/s':>8}")
    for (clients, name, phase), run in sorted(results.items(), key=lambda item: (item[0][0], _ORDER[item[0][1]])):
        print(_row(f"{clients:7d} {name:9} {phase:5}", run))
    print()
    for clients in sorted({1, args.clients}):
        for phase in ("cold", "warm"):
            endpoint = results[(clients, "endpoint", phase)]
            ratios = []
            for name in ("getTile", PER_CLIENT, ONE_PROCESS):
                floor = results[(clients, name, phase)]
                ratios.append(f"{name}: p50 {percentiles(endpoint[0])[0] / percentiles(floor[0])[0]:.1f}x, "
                              f"mean {statistics.fmean(endpoint[0]) / statistics.fmean(floor[0]):.1f}x, "
                              f"throughput {floor[1] / endpoint[1]:.2f}x")
            print(f"{clients:2d} clients, {phase}: endpoint / {ratios[0]}; / {ratios[1]}; / {ratios[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
