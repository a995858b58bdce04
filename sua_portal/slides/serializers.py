from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from sua_portal.slides.models import Annotation, Cohort, Slide, SlideUpload


class CohortSerializer(serializers.ModelSerializer):
    project: serializers.Field = serializers.PrimaryKeyRelatedField(read_only=True)
    slide_count = serializers.IntegerField(read_only=True, default=0)
    ready_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Cohort
        fields = ["id", "project", "name", "split", "domain", "description", "mpp_override", "archived", "created",
                  "slide_count", "ready_count"]
        read_only_fields = ["id", "project", "created", "slide_count", "ready_count"]
        # Name clashes are answered by the view with a sentence, not a generic "unique set".
        validators: list[Any] = []


class CohortCreateSerializer(CohortSerializer):
    # Checked against the caller's memberships by the view: a foreign project is a 404.
    project: serializers.Field = serializers.IntegerField(write_only=True)

    class Meta(CohortSerializer.Meta):
        read_only_fields = ["id", "created", "slide_count", "ready_count"]


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


class SlideSerializer(serializers.ModelSerializer):
    # A method, not CharField(default=None): DRF drops a defaulted field from partial (PATCH) answers.
    uploaded_by = serializers.SerializerMethodField(help_text="null once the uploader's account is gone")
    annotation_count = serializers.IntegerField(read_only=True, default=0)
    effective_mpp = serializers.FloatField(
        read_only=True, allow_null=True,
        help_text="the resolution in use (level-0 µm/px): mpp_override, else the file's mpp, else the cohort's "
                  "mpp_override; null: unknown, so no scale bar and no inference until an admin sets one",
    )
    mpp_source = serializers.ChoiceField(
        read_only=True, choices=["slide override", "file", "cohort override", "unknown"],
        help_text="where effective_mpp comes from",
    )
    links = serializers.SerializerMethodField()

    class Meta:
        model = Slide
        fields = [
            "id", "cohort", "name", "sha256", "size_bytes", "format", "width", "height", "levels", "mpp",
            "mpp_override", "effective_mpp", "mpp_source", "magnification", "status", "failure_reason", "has_tumor",
            "tissue_fraction", "uploaded_by", "created", "checked", "annotation_count", "links",
        ]
        read_only_fields = [f for f in fields if f not in ("name", "has_tumor", "mpp_override")]

    def get_uploaded_by(self, slide: Slide) -> str | None:
        return _username(slide.uploaded_by)

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
    def get_links(self, slide: Slide) -> dict[str, str]:
        return {
            "viewer": reverse("slide-viewer", args=[slide.pk]),
            "dzi": reverse("slide-dzi", args=[slide.pk]),
            "thumbnail": reverse("slide-thumbnail", args=[slide.pk, "jpeg"]),
            "annotations": reverse("slide-annotations", args=[slide.pk]),
        }


class SlideUploadFormSerializer(serializers.Serializer):
    """A slide sent whole as multipart/form-data."""

    file = serializers.FileField()


class AnnotationSerializer(serializers.ModelSerializer):
    author = serializers.SerializerMethodField(help_text="null for imported annotations and removed accounts")

    class Meta:
        model = Annotation
        fields = ["id", "slide", "label", "source", "author", "original_filename", "created", "geometry"]
        read_only_fields = fields

    def get_author(self, annotation: Annotation) -> str | None:
        return _username(annotation.author)


class AnnotationUploadSerializer(serializers.Serializer):
    """An annotation file: ASAP XML, GeoJSON (QuPath export) or a binary mask (PNG / TIFF, non-zero = tumor)."""

    file = serializers.FileField()
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=Annotation.Source.choices, default=Annotation.Source.GROUND_TRUTH
    )
    downsample = serializers.FloatField(
        required=False, min_value=1e-6, help_text="masks only: the mask's downsample of level 0 (default: inferred)"
    )
    tumor_classes = serializers.CharField(
        required=False, help_text="comma-separated class / group names that mean tumor (default: the SPEC's)"
    )
    label = serializers.CharField(required=False, default="Tumor", max_length=100)  # type: ignore[assignment]
    replace = serializers.BooleanField(
        required=False, default=False,
        help_text="ground truth only: put this file in place of the slide's ground truth (without it, a second "
                  "ground truth is a 409)",
    )


class UploadStartSerializer(serializers.Serializer):
    filename = serializers.CharField(max_length=1000)
    size = serializers.IntegerField(min_value=0)
    sha256 = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)


class SlideUploadSerializer(serializers.ModelSerializer):
    offset = serializers.IntegerField(source="received_bytes", read_only=True)
    complete = serializers.SerializerMethodField()

    class Meta:
        model = SlideUpload
        fields = ["id", "cohort", "filename", "size_bytes", "sha256", "offset", "complete", "created", "updated"]
        read_only_fields = fields

    def get_complete(self, upload: SlideUpload) -> bool:
        return upload.received_bytes == upload.size_bytes
