"""Settings for the test suite: the real settings with test-friendly defaults."""

import os

# Playwright's sync API keeps an event loop in the test thread; Django must still allow ORM calls there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("FAST_PASSWORD_HASHER", "true")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")

# pytest-xdist runs the suite in several processes ("gw0", "gw1", ...), each with its own test
# database (pytest-django adds the suffix); each also gets its own MEDIA_ROOT and its own keys in the
# broker, so one process's Celery worker never takes another's tasks. The Celery worker processes
# the tests start inherit PYTEST_XDIST_WORKER and so land in the same place.
# (MEDIA_ROOT is not put into os.environ: xdist's processes inherit the environment of the one that
# starts them, which loads these settings too.)
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")

from sua_portal.settings import *
from sua_portal.settings import BASE_DIR
from sua_portal.settings import CELERY_BROKER_TRANSPORT_OPTIONS as _BROKER_OPTIONS

if not os.environ.get("MEDIA_ROOT"):
    MEDIA_ROOT = BASE_DIR / "var" / "test-media" / XDIST_WORKER if XDIST_WORKER else BASE_DIR / "var" / "test-media"
if XDIST_WORKER:
    CELERY_BROKER_TRANSPORT_OPTIONS = {**_BROKER_OPTIONS, "global_keyprefix": f"{XDIST_WORKER}:"}
