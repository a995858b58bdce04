"""The first Celery round trip: a real worker process writes to the database."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sua_portal.core.models import WorkerPing
from sua_portal.core.tasks import ping
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_task_sent_through_the_broker_is_recorded_by_a_worker(celery_worker_process: Any) -> None:
    token = uuid.uuid4().hex
    result = ping.delay(token)
    assert result.get(timeout=60) == token
    row = wait_for(lambda: WorkerPing.objects.filter(token=token).first(), what="the worker's row")
    assert row.hostname


def test_the_worker_runs_with_late_acks_and_json_only() -> None:
    from sua_portal.celery import app

    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_soft_time_limit < app.conf.task_time_limit
    assert {q.name for q in app.conf.task_queues} == {"gpu", "cpu"}
