from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.django_db
def test_healthz_is_ok_when_database_and_broker_answer(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_healthz_names_the_broker_when_it_is_down(client: Any, settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"].startswith("broker:")


@pytest.mark.django_db
def test_healthz_names_the_database_when_it_is_down(client: Any, monkeypatch: Any) -> None:
    from django.db import connection

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise connection.Database.OperationalError("connection refused")  # type: ignore[attr-defined]

    # The real driver raising its real error: what psycopg does when the server is gone.
    monkeypatch.setattr(connection, "cursor", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"].startswith("database: OperationalError")
