from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from sua_portal.runs.models import Region, Run, RunCohort, RunRange, RunSlide


class RunCohortSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunCohort
        fields = ["cohort", "name", "role", "domain"]
        read_only_fields = fields


class RunRangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunRange
        fields = ["index", "lower", "upper", "sua_threshold", "baseline_threshold", "sua_validation",
                  "baseline_validation"]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer):
    cohorts = RunCohortSerializer(many=True, read_only=True)
    ranges = RunRangeSerializer(source="range_set", many=True, read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True, default=None)
    files = serializers.SerializerMethodField()
    page = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = ["id", "project", "name", "ensemble", "ensemble_name", "settings", "aggregate", "status", "step",
                  "progress", "failure_reason", "is_review_run", "copied_from", "created_by", "created", "started",
                  "finished", "cohorts", "ranges", "files", "page"]
        read_only_fields = fields

    def get_files(self, obj: Run) -> dict[str, str]:
        """Download name -> URL, permanent for the run."""
        names = [*sorted(obj.files), "slides.csv"] if obj.status == Run.Status.DONE else []
        return {name: reverse("run-files", args=[obj.pk, name]) for name in names}

    def get_page(self, obj: Run) -> str:
        return reverse("run-page", args=[obj.pk])


class RunDetailSerializer(RunSerializer):
    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "report"]
        read_only_fields = fields


class StartRunSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    ensemble = serializers.IntegerField()
    validation_cohorts = serializers.ListField(child=serializers.IntegerField(), min_length=1)
    test_cohorts = serializers.ListField(child=serializers.IntegerField(), min_length=1)
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    settings = serializers.DictField(required=False, default=dict,
                                     help_text="overrides of the paper's defaults: uncertainty, aggregate "
                                               "(mean, pNN or auto), ranges, fn_fraction, beta, bootstrap, seed, "
                                               "heatmap_downsample, review_range")


class RunSlideSerializer(serializers.ModelSerializer):
    viewer = serializers.SerializerMethodField()

    class Meta:
        model = RunSlide
        fields = ["id", "slide", "name", "cohort_name", "role", "domain", "has_tumor", "downsample", "figures",
                  "added_after_run", "viewer"]
        read_only_fields = fields

    def get_viewer(self, obj: RunSlide) -> str | None:
        if obj.slide_id is None:
            return None
        return f"{reverse('slide-viewer', args=[obj.slide_id])}?run={obj.run_id}"


class RegionSerializer(serializers.ModelSerializer):
    slide = serializers.IntegerField(source="run_slide.slide_id", read_only=True, allow_null=True)
    lower = serializers.FloatField(source="run_range.lower", read_only=True)
    upper = serializers.FloatField(source="run_range.upper", read_only=True)
    range_index = serializers.IntegerField(source="run_range.index", read_only=True)

    class Meta:
        model = Region
        fields = ["id", "slide", "range_index", "lower", "upper", "label", "area_px", "area_um2", "score",
                  "truth_fraction", "is_false_negative", "flagged", "x", "y", "width", "height", "geometry"]
        read_only_fields = fields
