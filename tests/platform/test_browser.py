from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_pathologist_signs_in_and_sees_their_projects_worklist(people: dict[str, Any], signed_in_page: Any) -> None:
    page = signed_in_page("pathologist")
    assert page.locator("h1").inner_text() == "Your worklist"
    assert [t.split("·")[0].strip() for t in page.locator(".worklist h2").all_inner_texts()] == ["Own"]
    shot(page, "home-pathologist", full_page=False)
    page.click("nav >> text=Projects")
    assert page.locator("h1").inner_text() == "Your projects"
    assert page.locator(".card.project h2").all_inner_texts() == ["Own"]


def test_a_wrong_password_is_explained(people: dict[str, Any], page: Any, live_server: Any) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "pathologist")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert "didn't match" in page.locator("[role=alert]").inner_text()
