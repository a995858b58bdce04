"""The caller's own page of personal API tokens (server-rendered: a form to make one, a button to revoke)."""

from __future__ import annotations

from typing import cast

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from sua_portal.accounts import tokens
from sua_portal.accounts.models import ApiToken


@login_required
def api_tokens(request: HttpRequest) -> HttpResponse:
    context: dict[str, object] = {"default_days": settings.API_TOKEN_DAYS, "max_days": tokens.max_days()}
    status = 200
    if request.method == "POST":
        if "revoke" in request.POST:
            raw = request.POST["revoke"]
            if not (raw.isdigit() and tokens.revoke(request.user, int(raw))):
                context["error"], status = "There is no such token of yours.", 404
        else:
            raw_days = request.POST.get("days", "").strip()
            try:
                days = int(raw_days) if raw_days else None
                context["new_token"], context["new_key"] = tokens.issue(
                    request.user, name=request.POST.get("name", "")[:100], days=days)
                status = 201
            except ValueError as exc:  # TokenError, or days that are not a number
                context["error"], status = (str(exc) if isinstance(exc, tokens.TokenError)
                                            else f"{raw_days!r} is not a number of days."), 400
    context["tokens"] = ApiToken.objects.filter(user_id=cast(int, request.user.pk))
    return render(request, "accounts/tokens.html", context, status=status)
