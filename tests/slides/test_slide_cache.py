"""The bounded slide cache of a worker machine: size limit, least recently used out, files in use stay."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from sua_portal.slides.local_cache import SlideCache
from tests.conftest import ROOT

KB = 1024


def writes(data: bytes, calls: list[bytes] | None = None) -> Callable[[IO[bytes]], None]:
    def download(out: IO[bytes]) -> None:
        if calls is not None:
            calls.append(data)
        out.write(data)

    return download


def use(cache: SlideCache, key: str, size: int = 10 * KB, calls: list[bytes] | None = None) -> Path:
    data = key.encode()[:1] * size
    with cache.open(key, f"{key}.svs", size, writes(data, calls)) as path:
        assert path.read_bytes() == data
    # mtimes order the uses: keep two uses apart on file systems with coarse timestamps.
    time.sleep(0.02)
    return path


def cached(cache: SlideCache) -> list[str]:
    return [e.key for e in cache.entries()]


def test_a_slide_is_downloaded_once_and_then_read_from_the_cache(tmp_path: Path) -> None:
    cache = SlideCache(tmp_path, 100 * KB)
    calls: list[bytes] = []
    first = use(cache, "aa11", calls=calls)
    second = use(cache, "aa11", calls=calls)
    assert first == second == tmp_path / "aa" / "aa11" / "aa11.svs"
    assert len(calls) == 1


def test_the_least_recently_used_slides_go_first_and_the_cache_stays_under_its_limit(tmp_path: Path) -> None:
    cache = SlideCache(tmp_path, 30 * KB)
    for key in ("aa01", "bb02", "cc03"):
        use(cache, key)
    use(cache, "aa01")  # read again: now bb02 is the one nobody used for longest
    use(cache, "dd04")
    assert cached(cache) == ["cc03", "aa01", "dd04"]
    assert cache.size() <= 30 * KB
    use(cache, "ee05")
    use(cache, "ff06")
    assert cached(cache) == ["dd04", "ee05", "ff06"] and cache.size() == 30 * KB
    assert not (tmp_path / "bb" / "bb02").exists()


def test_a_slide_in_use_by_this_process_is_never_evicted(tmp_path: Path) -> None:
    cache = SlideCache(tmp_path, 15 * KB)
    with cache.open("aa01", "aa01.svs", 10 * KB, writes(b"a" * 10 * KB)) as held:
        time.sleep(0.02)
        use(cache, "bb02")  # over the limit, but the older slide is being read
        assert held.is_file() and cached(cache) == ["aa01", "bb02"]
    assert cache.evict() == ["aa01"] and not held.exists()


def test_a_slide_in_use_by_another_process_on_the_machine_is_never_evicted(tmp_path: Path) -> None:
    cache = SlideCache(tmp_path, 15 * KB)
    # Another worker process with the same cache folder reads slide aa01 until told to stop.
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from sua_portal.slides.local_cache import SlideCache\n"
         f"cache = SlideCache(Path({str(tmp_path)!r}), {15 * KB})\n"
         f"with cache.open('aa01', 'aa01.svs', {10 * KB}, lambda out: out.write(b'a' * {10 * KB})):\n"
         "    print('reading', flush=True); sys.stdin.readline()\n"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
        time.sleep(0.02)
        use(cache, "bb02")
        assert cached(cache) == ["aa01", "bb02"]
    finally:
        assert reader.stdin is not None
        reader.stdin.write("done\n")
        reader.stdin.close()
        assert reader.wait(timeout=30) == 0
    assert cache.evict() == ["aa01"] and cached(cache) == ["bb02"]


def test_a_failed_or_short_download_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    cache = SlideCache(tmp_path, 100 * KB)

    def broken(out: IO[bytes]) -> None:
        out.write(b"x" * KB)
        raise ConnectionError("the object store went away")

    with pytest.raises(ConnectionError), cache.open("aa01", "aa01.svs", 10 * KB, broken):
        pass
    with pytest.raises(OSError, match=r"downloaded 1024 bytes of aa01\.svs, expected 10240"), \
            cache.open("aa01", "aa01.svs", 10 * KB, writes(b"x" * KB)):
        pass
    assert cache.size() == 0 and not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".lock"]


def test_a_cached_file_of_the_wrong_size_is_downloaded_again(tmp_path: Path) -> None:
    cache = SlideCache(tmp_path, 100 * KB)
    path = use(cache, "aa01")
    path.write_bytes(b"truncated")
    calls: list[bytes] = []
    assert use(cache, "aa01", calls=calls) == path and len(calls) == 1


def test_bad_limits_and_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="0 bytes or more"):
        SlideCache(tmp_path, -1)
    with pytest.raises(ValueError, match="bare name"), \
            SlideCache(tmp_path, KB).open("../etc", "x.svs", 1, writes(b"x")):
        pass
