"""The browser modules as production serves them: collected by collectstatic, served by WhiteNoise."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
# <script type="module" src="{% static 'app/viewer.js' %}">: the pages' entry modules.
MODULE_TAG = re.compile(r"""<script type="module" src="\{% static '([^']+)' %\}">""")
# import { x } from "./http.js"; the modules import each other by relative URL.
IMPORT = re.compile(r"""^\s*import\b[^"']*["'](\./[^"']+)["']""", re.MULTILINE)


def _entry_modules() -> list[str]:
    return sorted({m for t in (ROOT / "sua_portal").rglob("templates/**/*.html") for m in MODULE_TAG.findall(t.read_text())})


def test_the_pages_load_their_scripts_as_modules() -> None:
    assert _entry_modules() == ["app/admin.js", "app/annotate.js", "app/build.js", "app/ensembles.js", "app/import.js",
                                "app/run.js", "app/upload.js", "app/viewer.js"]


@pytest.mark.django_db
def test_every_module_and_its_imports_are_served_as_javascript_after_collectstatic(
    settings: Any, tmp_path: Path,
) -> None:
    settings.STATIC_ROOT = tmp_path / "static"
    settings.WHITENOISE_AUTOREFRESH = False
    settings.WHITENOISE_USE_FINDERS = False  # only what collectstatic wrote, as in the image
    call_command("collectstatic", interactive=False, verbosity=0)
    client = Client()  # a new handler: WhiteNoise reads the new STATIC_ROOT
    seen: set[str] = set()
    todo = [settings.STATIC_URL + entry for entry in _entry_modules()]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        assert response.status_code == 200, url
        # Browsers refuse a module script served with any other MIME type.
        assert response["Content-Type"].split(";")[0] in ("text/javascript", "application/javascript"), url
        source = response.getvalue().decode()
        todo += [url.rsplit("/", 1)[0] + "/" + name[2:] for name in IMPORT.findall(source)]
    assert {url.rsplit("/", 1)[1] for url in seen} == {
        "viewer.js", "layers.js", "vector.js", "queue.js", "upload.js", "http.js", "run.js", "build.js", "admin.js",
        "annotate.js", "ensembles.js", "import.js", "zipdir.js"}
    assert (settings.STATIC_ROOT / "openseadragon" / "openseadragon.min.js").is_file()
