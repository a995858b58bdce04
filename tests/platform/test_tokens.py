"""Personal API tokens: a user makes, uses and revokes their own, from the API and from their page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client


def _me(key: str) -> Any:
    return Client().get("/api/me/", headers={"Authorization": f"Token {key}"})


def test_a_token_made_through_the_api_works_until_it_is_revoked(people: dict[str, Any], api_for: Any) -> None:
    client = api_for(people["researcher"])
    made = client.post("/api/tokens/", {"name": "report script", "days": 30}, format="json")
    assert made.status_code == 201
    key = made.json()["key"]
    assert key.startswith("sua_") and made.json()["prefix"] == key[:10]
    me = _me(key)
    assert me.status_code == 200 and me.json()["username"] == "researcher"
    listed = client.get("/api/tokens/").json()["results"]
    assert [t["name"] for t in listed] == ["report script"] and "key" not in listed[0]
    assert listed[0]["last_used"] is not None
    assert client.delete(f"/api/tokens/{listed[0]['id']}/").status_code == 204
    refused = _me(key)
    assert refused.status_code == 403 and refused.json()["detail"] == "Invalid token."


def test_only_the_hash_of_a_key_is_stored(people: dict[str, Any], api_for: Any) -> None:
    from sua_portal.accounts.models import ApiToken

    key = api_for(people["admin"]).post("/api/tokens/", {"name": "x"}, format="json").json()["key"]
    row = ApiToken.objects.get()
    assert key not in (row.key_hash, row.prefix) and len(row.key_hash) == 64


def test_an_expired_token_is_refused_with_its_date(people: dict[str, Any], api_for: Any) -> None:
    from django.utils import timezone

    from sua_portal.accounts.models import ApiToken

    key = api_for(people["admin"]).post("/api/tokens/", {"name": "old", "days": 1}, format="json").json()["key"]
    ApiToken.objects.update(expires=timezone.now() - timedelta(minutes=1))
    refused = _me(key)
    assert refused.status_code == 403 and "expired on" in refused.json()["detail"]


def test_a_token_lasts_the_default_days_and_never_longer_than_the_maximum(people: dict[str, Any], api_for: Any,
                                                                         settings: Any) -> None:
    from django.utils import timezone

    from sua_portal.accounts.models import ApiToken

    client = api_for(people["admin"])
    assert client.post("/api/tokens/", {"name": "default"}, format="json").status_code == 201
    left = ApiToken.objects.get().expires - timezone.now()
    assert timedelta(days=settings.API_TOKEN_DAYS - 1) < left <= timedelta(days=settings.API_TOKEN_DAYS)
    too_long = client.post("/api/tokens/", {"name": "forever", "days": settings.API_TOKEN_MAX_DAYS + 1},
                           format="json")
    assert too_long.status_code == 400 and "days" in too_long.json()
    assert ApiToken.objects.count() == 1


def test_nobody_sees_or_revokes_anyone_elses_tokens(people: dict[str, Any], api_for: Any) -> None:
    mine = api_for(people["admin"]).post("/api/tokens/", {"name": "mine"}, format="json").json()
    other = api_for(people["pathologist"])
    assert other.get("/api/tokens/").json()["results"] == []
    assert other.delete(f"/api/tokens/{mine['id']}/").status_code == 404
    assert _me(mine["key"]).status_code == 200


def test_drf_tokens_made_by_an_admin_still_work(people: dict[str, Any]) -> None:
    from rest_framework.authtoken.models import Token

    assert _me(Token.objects.create(user=people["pathologist"]).key).json()["username"] == "pathologist"


@pytest.mark.parametrize("days", ["", "0", "many"])
def test_the_page_makes_lists_and_revokes_tokens(people: dict[str, Any], days: str) -> None:
    from sua_portal.accounts.models import ApiToken

    client = Client()
    client.force_login(people["pathologist"])
    page = client.post("/accounts/tokens/", {"name": "from the page", "days": days})
    if days != "":
        # A bad number of days is a 400 that says so, and makes nothing.
        assert page.status_code == 400 and ("days" in page.content.decode())
        assert not ApiToken.objects.exists()
        return
    assert page.status_code == 201
    token = ApiToken.objects.get(user=people["pathologist"])
    html = page.content.decode()
    assert "from the page" in html and token.prefix in html and "not shown again" in html
    key = html.split('<code class="token-key">')[1].split("</code>")[0]
    assert _me(key).status_code == 200
    # The key is shown once: the list has its first characters only.
    assert key not in client.get("/accounts/tokens/").content.decode()
    assert client.post("/accounts/tokens/", {"revoke": str(token.pk)}).status_code == 200
    assert not ApiToken.objects.exists() and _me(key).status_code == 403


def test_the_page_is_for_signed_in_users_and_revokes_only_their_own(people: dict[str, Any], api_for: Any) -> None:
    theirs = api_for(people["admin"]).post("/api/tokens/", {"name": "admin's"}, format="json").json()
    assert Client().get("/accounts/tokens/").status_code == 302
    client = Client()
    client.force_login(people["researcher"])
    assert client.post("/accounts/tokens/", {"revoke": str(theirs["id"])}).status_code == 404
    assert _me(theirs["key"]).status_code == 200
