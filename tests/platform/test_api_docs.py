"""The API reference pages work offline: Swagger UI and ReDoc come from our own static files
(drf-spectacular-sidecar), so a browser with no way out of the portal still renders every operation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def offline_page(page: Any, live_server: Any) -> tuple[Any, list[str]]:
    """The browser page, cut off from everything but the live server; the URLs it tried to reach elsewhere."""
    blocked: list[str] = []

    def only_the_portal(route: Any) -> None:
        url = route.request.url
        if url.startswith(live_server.url + "/") or url.startswith("data:") or url.startswith("blob:"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", only_the_portal)
    return page, blocked


def _operations_in_schema(client: Any) -> int:
    schema = client.get("/api/schema/?format=json").json()
    return sum(1 for ops in schema["paths"].values() for method in ops if method in ("get", "post", "put",
                                                                                   "patch", "delete"))


def test_swagger_ui_renders_every_operation_without_the_network(
    people: dict[str, Any], offline_page: tuple[Any, list[str]], live_server: Any,
    signed_in_page: Callable[[str], Any],
) -> None:
    from django.test import Client

    page, blocked = offline_page
    assert signed_in_page("researcher") is page  # signed in on the page cut off from the network
    page.click("text=API")
    page.wait_for_url(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=30_000)
    client = Client()
    client.force_login(people["researcher"])
    expected = _operations_in_schema(client)
    assert page.locator(".opblock").count() == expected
    assert page.locator(".opblock-summary-path", has_text="/api/slides/{id}/annotations/").count() >= 1
    assert "SUA Portal API" in page.locator(".info .title").inner_text()
    assert blocked == []


def test_redoc_renders_the_reference_without_the_network(
    people: dict[str, Any], offline_page: tuple[Any, list[str]], live_server: Any,
    signed_in_page: Callable[[str], Any],
) -> None:
    page, blocked = offline_page
    signed_in_page("pathologist")
    page.goto(f"{live_server.url}/api/redoc/")
    page.wait_for_selector("h1", timeout=30_000)
    assert "SUA Portal API" in page.locator("h1").first.inner_text()
    # ReDoc lists each operation in its menu, by its summary or method and path.
    page.wait_for_selector("[role=menuitem]", timeout=30_000)
    assert page.locator("[role=menuitem]").count() > 20
    assert page.get_by_text("/api/slides/{id}/annotations/").count() >= 1
    assert blocked == []


def test_the_docs_need_a_signed_in_caller(db: None) -> None:
    from django.test import Client

    for url in ("/api/docs/", "/api/redoc/"):
        assert Client().get(url).status_code == 403
