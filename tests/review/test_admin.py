"""The review's rows in Django's admin: every list and form opens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.review.conftest import regions_made_directly

pytestmark = pytest.mark.django_db


def test_every_review_list_and_row_opens_in_the_admin(admin_client: Any, make_user: Callable[..., Any]) -> None:
    from sua_portal.accounts.models import Membership, Project
    from sua_portal.review import services
    from sua_portal.review.models import CohortReviewer, Settlement, SlideCompletion, Verdict, VerdictChange

    project = Project.objects.create(name="Reviewed")
    pathologist = make_user("reviewer", "pathologist")
    Membership.objects.create(project=project, user=pathologist)
    region = regions_made_directly(project, 1)[0]
    services.save_verdict(region, pathologist, "tumor", "seen")
    services.complete_slide(region.run, region.run_slide, pathologist)
    CohortReviewer.objects.create(cohort=region.run_slide.slide.cohort, reviewer=pathologist, slot=1)
    Settlement.objects.create(run=region.run, region=region, verdict="unsure")
    for model in (Verdict, VerdictChange, Settlement, CohortReviewer, SlideCompletion):
        name = f"admin:review_{model._meta.model_name}"
        listed = admin_client.get(reverse(f"{name}_changelist"))
        assert listed.status_code == 200, model
        row = model.objects.get()  # type: ignore[attr-defined]
        assert admin_client.get(reverse(f"{name}_change", args=[row.pk])).status_code == 200, model
    # The history is a record: read only.
    assert admin_client.get(reverse("admin:review_verdictchange_add")).status_code == 403
    # An admin of another project sees none of these rows.
    elsewhere = make_user("elsewhere", "admin")
    Membership.objects.create(project=Project.objects.create(name="Elsewhere"), user=elsewhere)
    client = Client()
    client.force_login(elsewhere)
    for model in (Verdict, VerdictChange, Settlement, CohortReviewer, SlideCompletion):
        listed = client.get(reverse(f"admin:review_{model._meta.model_name}_changelist"))
        assert listed.status_code == 200 and listed.context["cl"].result_count == 0, model
