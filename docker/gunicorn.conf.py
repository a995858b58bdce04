"""gunicorn's settings for the web server (docker/entrypoint.sh starts it with ``-c`` this file).

gthread workers: each process answers ``GUNICORN_THREADS`` requests at a time
and keeps idle keep-alive connections without holding a thread, so a viewer's
tile bursts (OpenSeadragon asks for a screenful at once) neither queue behind
one another nor open a connection per tile. Processes give parallelism (Python
runs one thread at a time per process); threads overlap what releases the GIL
(JPEG decoding and encoding, file reads, database and cache round trips).

Each process has its own large-image tile cache (up to 1/32 of the machine's
memory) and, without ``CACHE_URL``, its own cache of callers and their slides:
more processes than cores cost memory and cache misses and buy nothing.

Defaults for now: one process per core, 8 threads each (the tile benchmark's settings so far).
"""

from __future__ import annotations

import os

from sua_portal.env import envint

#: CPUs this process may run on (a container's cpuset; all of the machine's otherwise).
cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

worker_class = "gthread"
workers = envint("GUNICORN_WORKERS", cores)
threads = envint("GUNICORN_THREADS", 8)
# Uploads go through resumable chunks and the heavy work through Celery: no request needs longer.
timeout = 120

if workers < 1 or threads < 1:
    raise SystemExit(f"GUNICORN_WORKERS ({workers}) and GUNICORN_THREADS ({threads}) must be at least 1")
