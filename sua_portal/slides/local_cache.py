"""A bounded cache of slide files on one machine's own disk, shared by all its processes.

With object storage (``STORAGE_BACKEND=s3``) large-image still needs a file it can seek in: every
web server and worker machine downloads the slides it reads into its own ``SLIDE_CACHE_DIR``.  The
cache is kept under ``SLIDE_CACHE_MAX_BYTES``: after each download the least recently used files
go until it fits again.

Layout: ``ROOT/ab/abcd…/slide.svs`` (one folder per SHA-256, the unit of eviction) and, beside it,
``ROOT/ab/abcd….lock``.  A process reading a file holds a shared ``flock`` on its lock file; the
eviction takes the lock exclusively without waiting and passes over files it cannot get, so a file
in use by any process on the machine (this one included) is never removed.  Lock files are never
deleted: a lock file replaced under a waiting process would let two processes believe they hold
the same lock.  Evictions run one at a time (``ROOT/.evict.lock``), so two processes never count
the same folder twice.  Nothing here knows about Django: the caller says how to download.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_EVICT_LOCK = ".evict.lock"
_PART = ".part"


@dataclass(frozen=True)
class CacheEntry:
    """One cached slide: its folder, what its files hold in bytes and when it was last used (epoch seconds)."""

    key: str
    folder: Path
    size: int
    last_used: float


@contextmanager
def _flock(path: Path, mode: int) -> Iterator[bool]:
    """Hold ``flock(mode)`` on ``path`` (created when missing) for the block; yields False when
    ``mode`` asked not to wait (``LOCK_NB``) and another open file holds a conflicting lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases its lock


def _stat_or_none(path: Path) -> os.stat_result | None:
    # Another process may rename its partial download at any moment.
    try:
        return path.stat()
    except FileNotFoundError:
        return None


class SlideCache:
    """Slide files under ``root``, at most ``max_bytes`` of them unless more are in use at once."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"the slide cache's size limit must be 0 bytes or more, not {max_bytes}")
        self.root = Path(root)
        self.max_bytes = int(max_bytes)

    def _folder(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"a slide cache key is a bare name like a SHA-256, not {key!r}")
        return self.root / key[:2] / key

    def _lock(self, key: str) -> Path:
        return self._folder(key).with_name(f"{key}.lock")

    @contextmanager
    def open(self, key: str, filename: str, size: int, download: Callable[[IO[bytes]], None]) -> Iterator[Path]:
        """The local file ``filename`` of slide ``key`` for the block, downloaded first when missing.

        ``download(out)`` writes the whole file into ``out``; a file of another ``size`` than the
        one announced (0: unknown) counts as missing.  No process evicts the file while the block
        runs.  Each use marks the file as recently used; after a download the cache is evicted
        down to its limit.
        """
        folder = self._folder(key)
        target = folder / Path(filename).name
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _flock(self._lock(key), fcntl.LOCK_SH):
            if target.is_file() and (not size or target.stat().st_size == size):
                os.utime(target)  # least recently used goes first: this one was used now
            else:
                self._download(target, size, download)
                self.evict()
            yield target

    def _download(self, target: Path, size: int, download: Callable[[IO[bytes]], None]) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name, renamed when complete: a reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=_PART, delete=False) as out:
            try:
                download(out)
                out.flush()
                written = out.tell()
                if size and written != size:
                    raise OSError(f"downloaded {written} bytes of {target.name}, expected {size}")
            except BaseException:
                out.close()
                Path(out.name).unlink(missing_ok=True)
                raise
        os.replace(out.name, target)

    def entries(self) -> list[CacheEntry]:
        """Every cached slide, least recently used first."""
        found = []
        for folder in self.root.glob("*/*"):
            if not folder.is_dir():
                continue
            # A MIRAX slide's data folder lies inside its slide's folder: count its files too.
            stats = [s for s in map(_stat_or_none, (p for p in folder.rglob("*") if not p.is_dir()))
                     if s is not None]
            found.append(CacheEntry(
                key=folder.name, folder=folder, size=sum(s.st_size for s in stats),
                last_used=max((s.st_mtime for s in stats), default=folder.stat().st_mtime),
            ))
        return sorted(found, key=lambda e: (e.last_used, e.key))

    def size(self) -> int:
        """Bytes the cached slides take (stale partial downloads included)."""
        return sum(e.size for e in self.entries())

    def evict(self) -> list[str]:
        """Remove least recently used slides nobody is reading until the cache fits its limit.

        Returns the keys removed.  Slides in use stay even when the cache is then over its limit
        (a warning says so): their bytes are on disk anyway while they are open.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        removed: list[str] = []
        with _flock(self.root / _EVICT_LOCK, fcntl.LOCK_EX):
            entries = self.entries()
            total = sum(e.size for e in entries)
            for entry in entries:
                if total <= self.max_bytes:
                    break
                with _flock(self._lock(entry.key), fcntl.LOCK_EX | fcntl.LOCK_NB) as free:
                    if not free:
                        continue
                    shutil.rmtree(entry.folder, ignore_errors=True)
                total -= entry.size
                removed.append(entry.key)
            if total > self.max_bytes:
                log.warning("slide cache %s holds %d bytes in use, more than its limit of %d",
                            self.root, total, self.max_bytes)
        return removed
