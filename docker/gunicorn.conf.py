"""gunicorn's settings for the web server (docker/entrypoint.sh starts it with ``-c`` this file).

gthread workers: each process answers ``GUNICORN_THREADS`` requests at a time
and keeps idle keep-alive connections without holding a thread, so a viewer's
tile bursts (OpenSeadragon asks for a screenful at once) neither queue behind
one another nor open a connection per tile. Processes give parallelism (Python
runs one thread at a time per process); threads overlap what releases the GIL
(JPEG decoding and encoding, file reads, database and cache round trips).

Each process has its own large-image tile cache and, without ``CACHE_URL``, its
own cache of callers and their slides: a tile warm in one process is cold in
another.

Defaults chosen by measurement: ``benchmarks/bench_tiles.py --sweep --repeat 2``
(2026-12-02), the DeepZoom endpoint serving the 1,344 tiles of the three finest
levels of an 8192^2 synthetic slide to 16 clients, cold (a fresh server for each
configuration), on a machine of 2 cores shared with other work: noisy, so
every configuration ran twice (the second time in reverse order) and the
better p50 is shown; the floor is large-image's ``getTile`` in one process with
16 threads. One process is held back by its GIL at any number of threads; two
processes per core are the fastest (the best p50 and throughput, within 2x of
the floor's p50); 16 threads are no better than 8. 4 x 4 was slow in both
runs, likely because a keep-alive connection stays with the worker that
accepted it: with exactly as many threads as clients, uneven accepts queue
clients behind one worker's threads while another's idle::

    workers  threads  p50 ms  p95 ms  tiles/s  p50 / floor  throughput / floor
          1        4    59.7    87.8      258         3.5x               0.45x
          1        8    56.1    94.0      275         3.3x               0.48x
          1       16    59.9   105.5      254         3.6x               0.44x
          2        4    41.4   149.8      299         2.5x               0.52x
          2        8    35.9   110.6      343         2.1x               0.60x
          2       16    48.1   171.5      238         2.9x               0.42x
          4        4    62.9   122.0      242         3.7x               0.42x
          4        8    30.6    64.1      476         1.8x               0.83x
          4       16    31.6    87.7      432         1.9x               0.75x
    getTile (floor)     16.8    49.3      572

The floor of this table is getTile in one process (16 threads, one GIL), each
tile timed around its call only; ``--sweep`` now lays the floor out as each
configuration and times every tile from the client's previous answer (see
bench_tiles), which this table predates. With the floor so laid out, 4 x 8
served 2026-12-03 within 0.7-1.8x of getTile's mean latency at 16 clients
(bench_tiles' docstring has the runs).

Measured again 2026-12-04, after tiles stored as complete JPEGs began to be passed through
(a cold tile 0.85 -> 0.015 ms to read): ``--sweep`` on 2,000 tiles of the three finest levels of a
98,000 x 8,192 band of the Camelyon-size slide, 16 clients, cold, one run each (the floor laid out
as each configuration; its p50 swings, see bench_tiles, so the mean ratio is the one to read)::

    workers  threads  p50 ms  p95 ms  mean ms  tiles/s  mean / floor  throughput / floor
          1        4    10.2    13.6     10.3     1542         0.7x               1.42x
          1        8    10.1    15.2     10.3     1546         0.7x               1.52x
          1       16     9.7    15.1     10.0     1597         0.6x               1.66x
          2        4     4.2    10.4      4.8     3301         0.5x               2.19x
          2        8     3.9     9.4      4.5     3494         0.5x               2.13x
          2       16     4.0     9.3      4.4     3555         0.5x               2.15x
          4        4     4.0    10.3      4.6     3417         0.5x               1.98x
          4        8     3.8    10.0      4.5     3457         0.5x               1.87x
          4       16     3.8    10.9      4.6     3427         0.5x               1.92x

One process is still held by its GIL; from one process per core on, every setting is within noise
of the others (3.8-4.2 ms p50, 3,300-3,550 tiles/s), so the defaults stand.

So: ``GUNICORN_WORKERS`` 2 x the cores this process may use, ``GUNICORN_THREADS`` 8.
(On a shared machine more processes also win a larger share of the CPU from
the other work, which flatters them; on a machine of its own, measure again.)
"""

from __future__ import annotations

import os

from sua_portal.env import envint

#: CPUs this process may run on (a container's cpuset; all of the machine's otherwise).
cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

worker_class = "gthread"
workers = envint("GUNICORN_WORKERS", 2 * cores)
threads = envint("GUNICORN_THREADS", 8)
# Uploads go through resumable chunks and the heavy work through Celery: no request needs longer.
# This is the worker heartbeat: a gthread worker's main loop keeps beating while one of its threads
# waits on a request body, so it never answers a body that stops arriving (measured: with
# --timeout 5, a POST announcing 1,000 bytes and sending 10 had no answer after 40 s, and held
# shutdown for the graceful 30 s). The portal answers that itself: sua_portal.core.bodies sets
# REQUEST_BODY_TIMEOUT (60 s) on the client's socket and replies 408 once a read waits that long;
# a body announced larger than its endpoint takes is a 413 before it is read.
timeout = 120
# Each worker touches a heartbeat file twice a request; on a disk-backed /tmp (a container's overlay, or
# ext4 while an upload is being written) that can block for milliseconds, in memory it does not
# (gunicorn's documentation says the same). Measured here: 4.1 ms at worst on /tmp while a 188 MiB
# slide was copied, 0.4 ms on /dev/shm.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

if workers < 1 or threads < 1:
    raise SystemExit(f"GUNICORN_WORKERS ({workers}) and GUNICORN_THREADS ({threads}) must be at least 1")
