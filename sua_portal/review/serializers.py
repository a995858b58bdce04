"""What the review API reads and writes. Answers are built from the services' dataclasses."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from sua_portal.review import services
from sua_portal.review.models import CohortReviewer, Kind, Settlement, Slot, Verdict

_VERDICT_CHOICE_ERROR: dict[str, Any] = {"invalid_choice": f'"{{input}}" is not a verdict: give one of {", ".join(Kind.values)}.'}


def _verdict_field(**kwargs: Any) -> serializers.ChoiceField:
    return serializers.ChoiceField(choices=Kind.choices, error_messages=_VERDICT_CHOICE_ERROR, **kwargs)


# --- requests --------------------------------------------------------------------------------


class SaveVerdictSerializer(serializers.Serializer):
    region = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="a flagged region of the review run")
    verdict = _verdict_field()
    comment = serializers.CharField(required=False, allow_blank=True, max_length=settings.REVIEW_COMMENT_MAX,
                                    trim_whitespace=False,
                                    help_text="left out: the comment there is stays; '' removes it")


class SlideBodySerializer(serializers.Serializer):
    slide = serializers.IntegerField(min_value=1, max_value=2**63 - 1)


class SettleSerializer(serializers.Serializer):
    region = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    verdict = _verdict_field()
    comment = serializers.CharField(required=False, allow_blank=True, default="",
                                    max_length=settings.REVIEW_COMMENT_MAX)


class AssignReviewerSerializer(serializers.Serializer):
    cohort = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    reviewer = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="the user's id")
    slot = serializers.ChoiceField(choices=Slot.choices, help_text="1: first reviewer, 2: second (blind to the first)")


# --- answers -----------------------------------------------------------------------------------


class VerdictSerializer(serializers.ModelSerializer):
    slide = serializers.IntegerField(source="region.run_slide.slide_id", read_only=True, allow_null=True)
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)

    class Meta:
        model = Verdict
        fields = ["id", "run", "region", "slide", "reviewer", "slot", "verdict", "comment", "created", "updated"]
        read_only_fields = fields


class MyVerdictSerializer(serializers.Serializer):
    """The caller's verdict on a region, as the queue shows it."""

    verdict = serializers.CharField()
    comment = serializers.CharField()
    slot = serializers.IntegerField()
    updated = serializers.DateTimeField()


class OutcomeSerializer(serializers.Serializer):
    """A region's verdicts together: a verdict, or "disputed"; settled by an admin or not."""

    verdict = serializers.CharField()
    settled = serializers.BooleanField()


class RangeSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    lower = serializers.FloatField()
    upper = serializers.FloatField()
    sua_threshold = serializers.FloatField(allow_null=True)


class QueueRegionSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="region.pk")
    label = serializers.IntegerField(source="region.label")  # type: ignore[assignment]  # Field.label is a title
    score = serializers.FloatField(source="region.score")
    area_um2 = serializers.FloatField(source="region.area_um2", allow_null=True)
    x = serializers.FloatField(source="region.x")
    y = serializers.FloatField(source="region.y")
    width = serializers.FloatField(source="region.width")
    height = serializers.FloatField(source="region.height")
    image = serializers.SerializerMethodField(help_text="a small JPEG of the region with some context around it")
    verdict = MyVerdictSerializer(allow_null=True, help_text="the caller's verdict; null until given")
    outcome = OutcomeSerializer(allow_null=True, help_text="the outcome the caller may see (view 'all': every "
                                "reviewer's verdicts; 'own': the caller's); null: none")

    def get_image(self, obj: services.QueueItem) -> str | None:
        slide = obj.region.run_slide.slide
        if slide is None:
            return None
        left, top, width, height = services.region_image_box(obj.region, width=slide.width, height=slide.height)
        return (f"{reverse('slide-region', args=[slide.pk, 'jpeg'])}?left={left}&top={top}&width={width}"
                f"&height={height}&max_size={settings.REVIEW_IMAGE_SIZE}")


class QueueSerializer(serializers.Serializer):
    run = serializers.IntegerField(source="run.pk")
    slide = serializers.IntegerField(source="run_slide.slide_id")
    slide_name = serializers.CharField(source="run_slide.name")
    range = RangeSerializer(source="run_range")
    slot = serializers.IntegerField(allow_null=True, help_text="the caller's reviewer slot; null: not a reviewer here")
    view = serializers.SerializerMethodField(help_text="the regions' outcome: 'all' reviewers' verdicts or 'own'")
    downsample = serializers.FloatField(source="run_slide.downsample",
                                        help_text="level-0 pixels per heatmap cell (the reviewed PNG's pixel)")
    complete = serializers.SerializerMethodField()
    completed = serializers.DateTimeField(source="completion.completed", allow_null=True, default=None)
    flagged = serializers.IntegerField()
    reviewed = serializers.IntegerField(help_text="regions with the caller's verdict")
    resume = serializers.IntegerField(allow_null=True, help_text="the first region without the caller's verdict")
    regions = QueueRegionSerializer(source="items", many=True)

    def get_complete(self, obj: services.SlideQueue) -> bool:
        return obj.completion is not None

    def get_view(self, obj: services.SlideQueue) -> str:
        return "all" if obj.everyone else "own"


class WorklistEntrySerializer(serializers.Serializer):
    slide = serializers.IntegerField(source="run_slide.slide_id")
    name = serializers.CharField(source="run_slide.name")
    cohort = serializers.IntegerField(source="run_slide.slide.cohort_id")
    cohort_name = serializers.CharField(source="run_slide.cohort_name")
    role = serializers.CharField(source="run_slide.role")
    domain = serializers.CharField(source="run_slide.domain")
    flagged = serializers.IntegerField()
    reviewed = serializers.IntegerField(help_text="flagged regions with the caller's verdict")
    max_score = serializers.FloatField(allow_null=True, help_text="the highest score of the slide's flagged regions")
    complete = serializers.BooleanField(help_text="the caller marked the slide review complete")
    viewer = serializers.SerializerMethodField()

    def get_viewer(self, obj: services.WorklistEntry) -> str:
        return f"{reverse('slide-viewer', args=[obj.run_slide.slide_id])}?run={obj.run_slide.run_id}"


class PlaceSerializer(serializers.Serializer):
    """A slide of the worklist and the region on it to go to (null: none left there)."""

    slide = WorklistEntrySerializer()
    region = serializers.IntegerField(allow_null=True)


class WorklistSerializer(serializers.Serializer):
    run = serializers.IntegerField(source="run.pk")
    range = RangeSerializer(source="run_range")
    slides = WorklistEntrySerializer(source="entries", many=True)
    resume = PlaceSerializer(allow_null=True, help_text="where the caller goes on; null: nothing left to review")


class NextSlideSerializer(serializers.Serializer):
    next = PlaceSerializer(allow_null=True, help_text="null: no other slide has regions left to review")


class UndoneSerializer(serializers.Serializer):
    region = serializers.IntegerField(source="region.pk")
    slide = serializers.IntegerField(source="region.run_slide.slide_id", allow_null=True)
    undone = serializers.SerializerMethodField(help_text="the verdict taken back")
    verdict = VerdictSerializer(allow_null=True, help_text="the caller's verdict on the region now (null: none)")

    def get_undone(self, obj: services.Undone) -> dict[str, str]:
        return {"verdict": obj.change.after_verdict, "comment": obj.change.after_comment}


class CompletionSerializer(serializers.Serializer):
    slide = serializers.IntegerField()
    complete = serializers.BooleanField()
    completed = serializers.DateTimeField(allow_null=True)


class CountsSerializer(serializers.Serializer):
    flagged = serializers.IntegerField()
    reviewed = serializers.IntegerField(help_text="flagged regions with a verdict")
    confirmed = serializers.IntegerField(help_text="tumor")
    rejected = serializers.IntegerField(help_text="not tumor")
    unsure = serializers.IntegerField()
    disputed = serializers.IntegerField(help_text="reviewers disagree and no admin settled")
    settled = serializers.IntegerField(help_text="decided by an admin's settlement")
    precision = serializers.FloatField(allow_null=True, help_text="confirmed / (confirmed + rejected)")


class CohortCountsSerializer(CountsSerializer):
    cohort = serializers.CharField(help_text="the cohort's name when the run was started")
    role = serializers.CharField()
    domain = serializers.CharField()


class SummarySerializer(serializers.Serializer):
    run = serializers.IntegerField(source="run.pk")
    range = RangeSerializer(source="run_range")
    view = serializers.SerializerMethodField(help_text="'all': every reviewer's verdicts; 'own': the caller's")
    expected_precision = serializers.FloatField(allow_null=True,
                                                help_text="the flags' precision on validation at the threshold")
    total = CountsSerializer()
    cohorts = CohortCountsSerializer(many=True)

    def get_view(self, obj: services.Summary) -> str:
        return "all" if obj.everyone else "own"


class ReviewerVerdictSerializer(serializers.Serializer):
    reviewer = serializers.CharField(source="reviewer.username")
    slot = serializers.IntegerField()
    verdict = serializers.CharField()
    comment = serializers.CharField()
    updated = serializers.DateTimeField()


class SettlementSerializer(serializers.ModelSerializer):
    settled_by = serializers.CharField(source="settled_by.username", allow_null=True, default=None, read_only=True)

    class Meta:
        model = Settlement
        fields = ["id", "run", "region", "verdict", "comment", "settled_by", "settled"]
        read_only_fields = fields


class DisagreementSerializer(serializers.Serializer):
    region = serializers.IntegerField(source="region.pk")
    slide = serializers.IntegerField(source="region.run_slide.slide_id", allow_null=True)
    slide_name = serializers.CharField(source="region.run_slide.name")
    label = serializers.IntegerField(source="region.label")  # type: ignore[assignment]  # Field.label is a title
    score = serializers.FloatField(source="region.score")
    x = serializers.FloatField(source="region.x")
    y = serializers.FloatField(source="region.y")
    width = serializers.FloatField(source="region.width")
    height = serializers.FloatField(source="region.height")
    verdicts = ReviewerVerdictSerializer(many=True)
    settlement = SettlementSerializer(allow_null=True)


class CohortReviewerSerializer(serializers.ModelSerializer):
    reviewer_name = serializers.CharField(source="reviewer.username", read_only=True)
    cohort_name = serializers.CharField(source="cohort.name", read_only=True)

    class Meta:
        model = CohortReviewer
        fields = ["id", "cohort", "cohort_name", "reviewer", "reviewer_name", "slot", "added"]
        read_only_fields = fields
