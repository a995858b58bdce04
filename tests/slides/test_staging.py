"""Upload staging on the web's own disk: stale files go even when the purge runs on another machine."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from sua_portal.slides import services
from sua_portal.slides.models import SlideUpload
from tests.slides.conftest import Storage

pytestmark = pytest.mark.django_db


def test_starting_an_upload_removes_staging_files_untouched_for_two_days(
    people: dict[str, Any], cohort: Any, storage: Storage, api_for: Any,
) -> None:
    # An upload a worker machine's purge forgot: its row is gone, its bytes are still on the web.
    abandoned = storage.staging / "0b6f0a4e-abandoned.part"
    abandoned.write_bytes(b"x" * 100)
    three_days_ago = time.time() - 3 * 24 * 3600
    os.utime(abandoned, (three_days_ago, three_days_ago))
    # Someone else's upload, still going on.
    ongoing = services.start_upload(cohort, filename="other.svs", size=10)
    response = api_for(people["admin"]).post(f"/api/cohorts/{cohort.pk}/uploads/",
                                             {"filename": "slide.svs", "size": 10}, format="json")
    assert response.status_code == 201, response.content
    assert not abandoned.exists()
    assert sorted(p.name for p in storage.staging.iterdir()) == sorted(
        f"{u.pk}.part" for u in SlideUpload.objects.all())
    assert f"{ongoing.pk}.part" in {p.name for p in storage.staging.iterdir()}
