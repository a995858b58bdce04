"""Training a tiny ensemble end to end: through the API on a real worker, and by command (the demo loader: tests/runs/test_demo.py)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command

from sua_portal.ensembles.models import Ensemble, SlideHeatmap
from tests.conftest import wait_for

TRAIN_URL = "/api/ensembles/train/"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_researcher_trains_a_tiny_ensemble_on_a_worker_and_watches_its_progress(
    celery_worker_process: Any, people: dict[str, Any], api_for: Callable[[Any], Any],
    demo_cohorts: dict[str, Any], settings: Any,
) -> None:
    client = api_for(people["researcher"])
    response = client.post(TRAIN_URL, {
        "project": people["own"].pk, "name": "Tiny", "cohorts": [demo_cohorts["train"].pk],
        "validation_cohorts": [demo_cohorts["validation"].pk],
        "config": {"preset": "test", "members": 2, "max_epochs": 2},
    }, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "training"
    url = f"/api/ensembles/{response.json()['id']}/"

    body = wait_for(lambda: (b := client.get(url).json())["status"] != "training" and b, timeout=120,
                    what="training")
    assert body["status"] == "ready", body["failure_reason"]
    assert [m["index"] for m in body["members"]] == [0, 1]
    seeds = {m["seed"] for m in body["members"]}
    assert len(seeds) == 2  # members differ in seed
    for member in body["members"]:
        assert member["status"] == "ready" and member["epochs"] == 2
        assert [e["epoch"] for e in member["history"]] == [1, 2]
        assert {"train_loss", "val_dice", "learning_rate"} <= set(member["latest"])
        assert 0 <= member["latest"]["val_dice"] <= 1
    # Trained on 32 px patches, it segments slides in large tiles.
    assert body["tile_size"] == settings.INFERENCE_TILE and body["level_downsample"] == 2.0

    # The trained ensemble runs over a slide on the same worker.
    run = client.post(f"{url}run/", {"cohorts": [demo_cohorts["test_in_domain"].pk]}, format="json")
    assert run.status_code == 202
    ids = [h["id"] for h in run.json()]
    wait_for(lambda: set(SlideHeatmap.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"done"},
             timeout=120, what="inference with the trained ensemble")


@pytest.mark.django_db
@pytest.mark.parametrize(("config", "message"), [
    ({"max_epochs": 0}, "max_epochs"),
    ({"optimizer": "adagrad"}, "adagrad"),
    ({"preset": "huge"}, "unknown training preset 'huge'"),
    ({"members": "five"}, "members"),
])
def test_bad_training_settings_are_refused_and_nothing_is_queued(
    config: dict[str, Any], message: str, people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    from sua_portal.slides.models import Cohort

    cohort = Cohort.objects.create(project=people["own"], name="T", split="train", domain="in-domain")
    response = api_for(people["researcher"]).post(TRAIN_URL, {
        "project": people["own"].pk, "name": "Bad", "cohorts": [cohort.pk], "config": config}, format="json")
    assert response.status_code == 400, response.content
    assert message in str(response.json())
    assert not Ensemble.objects.exists()


@pytest.mark.django_db
def test_training_on_another_project_s_cohort_is_refused(
    people: dict[str, Any], api_for: Callable[[Any], Any],
) -> None:
    from sua_portal.slides.models import Cohort

    theirs = Cohort.objects.create(project=people["foreign"], name="T", split="train", domain="in-domain")
    response = api_for(people["researcher"]).post(TRAIN_URL, {
        "project": people["own"].pk, "name": "Sneaky", "cohorts": [theirs.pk]}, format="json")
    assert response.status_code == 400 and "not in this project" in str(response.json())
    assert api_for(people["pathologist"]).post(TRAIN_URL, {
        "project": people["own"].pk, "name": "x", "cohorts": [theirs.pk]}, format="json").status_code == 403
    assert not Ensemble.objects.exists()


@pytest.mark.django_db
def test_the_demo_loader_refuses_training_settings_that_are_not_json(people: dict[str, Any]) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--training must be a JSON object"):
        call_command("load_demo", project="Own", preset="test", training="members=3")


@pytest.mark.django_db
def test_the_train_ensemble_command_trains_here_and_names_bad_input(
    demo_cohorts: dict[str, Any], people: dict[str, Any],
) -> None:
    from django.core.management.base import CommandError

    out = io.StringIO()
    call_command("train_ensemble", project="Own", name="From the shell", cohort=["train"], validation=["validation"],
                 config='{"preset": "test", "members": 1, "max_epochs": 1}', stdout=out)
    ensemble = Ensemble.objects.get(name="From the shell")
    assert ensemble.status == "ready" and ensemble.members.count() == 1
    assert "member 0, epoch 1" in out.getvalue() and "is ready" in out.getvalue()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"cohort": ["nope"]}, "no cohort called 'nope'"),
        ({"config": "{members: 2"}, "--config is not JSON"),
        ({"config": '{"max_epochs": 0}'}, "max_epochs must be a positive integer"),
        ({"name": "From the shell"}, "already exists"),
        ({"project": "Elsewhere"}, "no project called 'Elsewhere'"),
    ]
    for options, message in cases:
        with pytest.raises(CommandError, match=message):
            call_command("train_ensemble", **{"project": "Own", "name": "Another", "cohort": ["train"], **options})
    assert Ensemble.objects.count() == 1
