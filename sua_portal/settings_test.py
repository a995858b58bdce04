"""Settings for the test suite: the real settings with test-friendly defaults."""

import os
from pathlib import Path

# Playwright's sync API keeps an event loop in the test thread; Django must still allow ORM calls there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("FAST_PASSWORD_HASHER", "true")
os.environ.setdefault("MEDIA_ROOT", str(Path(__file__).resolve().parent.parent / "var" / "test-media"))
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")

from sua_portal.settings import *
