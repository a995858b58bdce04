"""Fixtures on real services: PostgreSQL (pytest-django's test database), Redis, a Celery
worker process and headless Chromium."""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

# One OpenMP / BLAS thread per test process (the Celery workers and training processes the tests start
# inherit it): the suite runs as pytest-xdist processes beside their Celery workers, browsers and
# PostgreSQL on a 2-core machine, and torch's and OpenBLAS's default of one spinning thread per core
# in every process had them waiting on each other (pytest -n 2: 340 -> 202 s, CPU 430 -> 250 s).
# Set before torch or numpy is first imported in the process that runs tests; xdist's processes
# inherit it from the one that starts them. Tests of threaded code set their threads themselves.
for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: Without a GPU, Chromium runs WebGL on SwiftShader, in software: OpenSeadragon's WebGL drawer (its
#: default) then draws about 2 frames a second on a busy 2-core machine while it loads tiles, one tile
#: per frame, and every viewer test waited 10-15 s for its tiles. With WebGL off OpenSeadragon falls back
#: to its canvas drawer (60 frames a second, the same tiles). Tests marked ``webgl`` keep the WebGL
#: drawer: a second browser with WebGL on.
NO_WEBGL = ["--disable-webgl"]


def pytest_configure(config: pytest.Config) -> None:
    # Schemathesis gives all the operations of test_api_fuzz one node id, and pytest-xdist's scheduling by
    # scope (module, file, group) keys its queue by node id: 50 of the fuzz tests would silently not run.
    dist = getattr(config.option, "dist", "no")
    if getattr(config.option, "numprocesses", None) and dist in ("loadscope", "loadfile", "loadgroup"):
        raise pytest.UsageError(f"--dist {dist} drops tests here (test_api_fuzz's node ids repeat): "
                                "use --dist load or worksteal")


# --- people --------------------------------------------------------------------------------


def create_user(username: str, role: str | None = None, password: str = "pw-for-tests") -> Any:
    """A user, in the group of ``role`` when given."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username=username, password=password)
    if role:
        # get_or_create: transactional tests flush the groups the data migration made.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def make_user(db: Any) -> Callable[..., Any]:
    return create_user


def create_people() -> dict[str, Any]:
    """One user per role in project 'Own', plus an outsider admin in project 'Foreign'."""
    from sua_portal.accounts.models import Membership, Project

    own = Project.objects.create(name="Own")
    foreign = Project.objects.create(name="Foreign")
    users = {role: create_user(role, role) for role in ("admin", "pathologist", "researcher")}
    for user in users.values():
        Membership.objects.create(project=own, user=user)
    outsider = create_user("outsider", "admin")
    Membership.objects.create(project=foreign, user=outsider)
    return {"own": own, "foreign": foreign, "outsider": outsider, **users}


def remove_people(people: dict[str, Any]) -> None:
    """Delete what :func:`create_people` made, and with their projects everything in them."""
    from django.contrib.auth.models import User

    for project in ("own", "foreign"):
        people[project].delete()
    User.objects.filter(pk__in=[people[role].pk for role in ("admin", "pathologist", "researcher", "outsider")]
                        ).delete()


@pytest.fixture
def people(db: Any) -> dict[str, Any]:
    """One user per role in project 'Own', plus an outsider admin in project 'Foreign'."""
    return create_people()


@pytest.fixture
def api_for() -> Callable[[Any], Any]:
    from rest_framework.test import APIClient

    def client_for(user: Any | None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return client_for


# --- the test database ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test database, and at its end no connection left to it.

    A connection can outlive the tests (test_api_fuzz's requests after a browser test open one in
    another context); PostgreSQL then waits 5 s for it and refuses to drop the test database, which
    the next run has to drop instead. Such connections are ended here, just before the drop.
    """
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")


# --- storage -------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def fresh_test_media() -> None:
    """Start every run with an empty test MEDIA_ROOT: the test database's ids start again at 1
    each run, so files an earlier run left would sit where this run's files go."""
    from django.conf import settings

    media = Path(settings.MEDIA_ROOT)
    # Never anything but the test settings' folder, or under pytest-xdist this process's folder in it.
    ours = media.name == "test-media" or (
        media.parent.name == "test-media" and media.name == os.environ.get("PYTEST_XDIST_WORKER"))
    if ours and media.is_dir():
        shutil.rmtree(media)
    media.mkdir(parents=True, exist_ok=True)


# --- slides ----------------------------------------------------------------------------------

#: openslide-python's test fixtures; CI has them beside the repository, at ../shared/testdata.
TESTDATA = ROOT.parent / "shared" / "testdata" / "openslide-python"


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"test slides missing: {TESTDATA} (the shared testdata folder beside the repository)")
    return TESTDATA


def run_folder(tmp_path_factory: Any) -> Path:
    """The temporary folder every process of this pytest run shares: pytest-xdist's processes each
    have a temporary folder of their own inside it. What is made once per run goes here, each
    thing under an :func:`exclusive` lock (the first process makes it, the others wait and read it)."""
    basetemp = tmp_path_factory.getbasetemp()
    return Path(basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp)


@contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (other processes wait for it)."""
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def synthetic_cohort_entries(tmp_path_factory: Any) -> tuple[Path, list[Any]]:
    """Eight small synthetic slides (train, validation, test in-domain, test shifted), made once per run
    (see :func:`run_folder`): their folder and the ``CohortEntry`` list ``generate_cohort`` returned
    (read-only for tests)."""
    from analysis.synthetic import generate_cohort

    shared = run_folder(tmp_path_factory)
    root, made = shared / "synthetic", shared / "synthetic.entries.pickle"
    with exclusive(shared / "synthetic.lock"):
        if not made.exists():
            made.write_bytes(pickle.dumps(generate_cohort(root, preset="test", seed=0, workers=1)))
    return root, pickle.loads(made.read_bytes())


@pytest.fixture(scope="session")
def synthetic_cohort(synthetic_cohort_entries: tuple[Path, list[Any]]) -> Path:
    """The folder of the session's synthetic test cohort (read-only for tests)."""
    return synthetic_cohort_entries[0]


# --- a real Celery worker ----------------------------------------------------------------------


def _database_url(settings_dict: dict[str, Any]) -> str:
    host = settings_dict.get("HOST") or ""
    host = quote(host, safe="") if host.startswith("/") else host
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    auth = settings_dict.get("USER") or ""
    if settings_dict.get("PASSWORD"):
        auth += f":{quote(settings_dict['PASSWORD'], safe='')}"
    return f"postgres://{auth}@{host}{port}/{settings_dict['NAME']}"


def start_worker(env: dict[str, str], *, queues: str, name: str, log: Path) -> subprocess.Popen[bytes]:
    """A `celery worker` process on ``queues`` ("gpu,cpu") with environment ``env``, once it is ready;
    its output goes to ``log`` (kept as ``proc.log_path``)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "sua_portal", "worker", "-Q", queues, "-c", "1",
             "-P", "prefork", "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
             "-l", "INFO"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited early:\n{log.read_text()}")
        if "ready." in log.read_text():
            break
        time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError(f"celery worker did not become ready:\n{log.read_text()}")
    proc.log_path = log  # type: ignore[attr-defined]
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def worker_env(**overrides: str) -> dict[str, str]:
    """The environment of a worker process on the test database and broker, with ``overrides``."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    env["DATABASE_URL"] = _database_url(connection.settings_dict)
    env["DJANGO_SETTINGS_MODULE"] = "sua_portal.settings_test"
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["CELERY_BROKER_URL"] = str(settings.CELERY_BROKER_URL)
    return {**env, **overrides}


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[Any]:
    """A real `celery worker` process on both queues, connected to the test database."""
    from sua_portal.celery import app

    app.control.purge()
    proc = start_worker(worker_env(), queues="gpu,cpu", name=f"test-{os.getpid()}",
                        log=tmp_path_factory.mktemp("worker") / "worker.log")
    yield proc
    stop_worker(proc)


def shots_folder() -> Path | None:
    """$SUA_SHOTS: where browser tests save what they showed (screenshots, the review's timings) for a
    person to look at; None when it is not set (then nothing is captured: a screenshot nobody opens
    costs the browser an encoded PNG)."""
    if shots := os.environ.get("SUA_SHOTS", ""):
        Path(shots).mkdir(parents=True, exist_ok=True)
        return Path(shots)
    return None


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    """A screenshot of a browser test's page (the whole page, or the window) under $SUA_SHOTS."""
    if folder := shots_folder():
        page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)


def wait_for(predicate: Callable[[], Any], *, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- headless Chromium -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Any]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


#: Chromium (156) opens a renderer for its WebUI omnibox popups (chrome://omnibox-popup.top-chrome/)
#: with every window, a headless one too: a browser context cost 0.8 core-seconds with it, 0.2 without.
NO_OMNIBOX_POPUP = ["WebUIOmniboxPopup", "WebUIOmniboxAimPopup"]


def _own_processes_args() -> Iterator[list[str]]:
    """The command lines of this process's descendants (Chromium rewrites its own into one string)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        with suppress(OSError, ValueError, IndexError):
            parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    for pid in parent:
        ancestor = parent.get(pid)
        while ancestor and ancestor != os.getpid():
            ancestor = parent.get(ancestor)
        if ancestor == os.getpid():
            with suppress(OSError):
                yield (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().split()


@pytest.fixture(scope="session")
def chromium_args(playwright_driver: Any) -> list[str]:
    """CHROMIUM_ARGS with NO_OMNIBOX_POPUP's features disabled beside Playwright's own (once a session).

    Of several ``--disable-features`` switches Chromium keeps the last, and Playwright passes its own
    (features it needs off); so they are read off a browser started with Playwright's defaults and
    passed again with ours.
    """
    if not Path("/proc").is_dir():  # no command lines to read (not Linux): Playwright's features alone
        return CHROMIUM_ARGS
    marker = "--sua-features-probe"  # a switch Chromium ignores, to tell the probe from other browsers
    # Once in about ten runs of the browser tests this probe failed (every browser test of that pytest
    # process errored; its message was not kept): whatever fails here now only leaves the popups on.
    theirs: set[str] = set()
    try:
        probe = playwright_driver.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                  args=[*CHROMIUM_ARGS, marker])
        try:
            # A set, read again until it holds one switch: a child the browser has forked but not yet
            # exec'd would show the browser's own command line (the switch twice), one being rewritten none.
            for _ in range(50):
                theirs = {arg.split("=", 1)[1] for args in _own_processes_args()
                          if marker in args and not any(a.startswith("--type=") for a in args)
                          for arg in args if arg.startswith("--disable-features=")}
                if len(theirs) == 1:
                    break
                time.sleep(0.1)
        finally:
            probe.close()
    except Exception as exc:  # the switch saves CPU only: never fail the browser tests over it
        warnings.warn(f"Chromium's features not probed ({exc}); the omnibox popups stay on", stacklevel=1)
        return CHROMIUM_ARGS
    if len(theirs) != 1:
        warnings.warn(f"expected Playwright's one --disable-features switch on Chromium's command line, found {theirs}; "
                      "the omnibox popups stay on", stacklevel=1)
        return CHROMIUM_ARGS
    features = ",".join([*theirs, *NO_OMNIBOX_POPUP])
    return [*CHROMIUM_ARGS, f"--disable-features={features}"]


@pytest.fixture(scope="session")
def browser(playwright_driver: Any, chromium_args: list[str]) -> Iterator[Any]:
    """Headless Chromium, started once per session (each test gets a context of its own), WebGL off."""
    instance = playwright_driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args + NO_WEBGL)
    yield instance
    instance.close()


@pytest.fixture(scope="session")
def webgl_browser(playwright_driver: Any, chromium_args: list[str]) -> Iterator[Any]:
    """Headless Chromium with WebGL (on SwiftShader), for the tests marked ``webgl``."""
    instance = playwright_driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args)
    yield instance
    instance.close()


@pytest.fixture
def page(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page in a fresh browser context; in the WebGL browser for a test marked ``webgl``."""
    browser = request.getfixturevalue("webgl_browser" if request.node.get_closest_marker("webgl") else "browser")
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def signed_in_page(page: Any, live_server: Any) -> Callable[[str, str], Any]:
    def sign_in(username: str, password: str = "pw-for-tests") -> Any:
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        return page

    return sign_in
