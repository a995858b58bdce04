#!/bin/sh
# One entrypoint for every role of the image: web, worker-cpu, worker-gpu, beat, or any command.
set -e
case "$1" in
  web)
    python manage.py migrate --noinput
    # Workers, threads and timeout: gunicorn.conf.py (GUNICORN_WORKERS, GUNICORN_THREADS), chosen by measurement.
    exec gunicorn sua_portal.wsgi:application --config gunicorn.conf.py --bind 0.0.0.0:8000
    ;;
  worker-cpu)
    exec celery -A sua_portal worker -Q cpu -c "${WORKER_CONCURRENCY:-2}" -n cpu@%h -l INFO
    ;;
  worker-gpu)
    # One process per GPU: models are built inside the worker process, after the fork.
    # Batches of 64 tiles (benchmarks/bench_inference_large.py on an H200); INFERENCE_COMPILE=true
    # compiles the members too (README: measured faster, not yet end to end in this image).
    export INFERENCE_BATCH="${INFERENCE_BATCH:-64}"
    exec celery -A sua_portal worker -Q gpu -c 1 -n gpu@%h -l INFO
    ;;
  beat)
    # The periodic tasks (settings.CELERY_BEAT_SCHEDULE): one beat for the whole deployment.
    exec celery -A sua_portal beat -l INFO -s /data/celerybeat-schedule
    ;;
  *)
    exec "$@"
    ;;
esac
