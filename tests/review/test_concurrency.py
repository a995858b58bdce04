"""Saves at the same moment, on real PostgreSQL connections (one per thread): nothing is lost, nothing doubled."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from sua_portal.review import services
from sua_portal.review.models import Verdict, VerdictChange
from tests.review.conftest import regions_made_directly

ROUNDS = 3


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_saving_one_region_at_the_same_moment_both_keep_their_verdict_once(
    people: dict[str, Any], make_user: Callable[..., Any],
) -> None:
    from sua_portal.accounts.models import Membership

    second = make_user("second-pathologist", "pathologist")
    Membership.objects.create(project=people["own"], user=second)
    first = people["pathologist"]
    regions = regions_made_directly(people["own"], ROUNDS)
    for region in regions:
        # Each reviewer sends the verdict twice at once (a double click), all four requests together.
        senders = [(first, "tumor"), (first, "tumor"), (second, "not_tumor"), (second, "not_tumor")]
        start = threading.Barrier(len(senders))
        failures: list[BaseException] = []

        def send(user: Any, verdict: str, region: Any = region, start: threading.Barrier = start,
                 failures: list[BaseException] = failures) -> None:
            try:
                start.wait()
                services.save_verdict(region, user, verdict, "")
            except BaseException as exc:
                failures.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=send, args=sender) for sender in senders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert dict(Verdict.objects.filter(region=region).values_list("reviewer__username", "verdict")) == {
            "pathologist": "tumor", "second-pathologist": "not_tumor"}
        assert VerdictChange.objects.filter(region=region).count() == 2
