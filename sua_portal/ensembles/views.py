from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from sua_portal.accounts import roles
from sua_portal.accounts.models import Project
from sua_portal.accounts.permissions import HasRole
from sua_portal.core.params import query_id
from sua_portal.ensembles import services
from sua_portal.ensembles.models import Ensemble, SlideHeatmap
from sua_portal.ensembles.serializers import (
    DryRunSerializer,
    EnsembleSerializer,
    HeatmapSerializer,
    ImportSerializer,
    RunSerializer,
    TrainSerializer,
)
from sua_portal.http import not_modified
from sua_portal.slides.models import Cohort, Slide
from sua_portal.slides.views import StrictMultiPartParser

_NOT_YOUR_PROJECT = OpenApiResponse(description="the project is not one of the caller's")


def _member_project(request: Request, project_id: int) -> Project:
    try:
        return Project.objects.visible_to(request.user).get(pk=project_id)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None


class EnsembleViewSet(viewsets.ReadOnlyModelViewSet):
    """Ensembles of the caller's projects, with each member's training progress."""

    serializer_class = EnsembleSerializer
    permission_classes = [IsAuthenticated, HasRole]
    # Admins bring models in; researchers train and run them.
    allowed_roles = (roles.ADMIN, roles.RESEARCHER)
    # Member files' names are checked as the slides app checks them (normalised; no paths, no empty names).
    parser_classes = [JSONParser, StrictMultiPartParser, FormParser]
    list_filters = {"list": ()}
    # All members of an import together (sua_portal.core.bodies refuses more from Content-Length).
    body_limits = {"import_members": lambda: int(settings.ENSEMBLE_MAX_UPLOAD_BYTES)}
    # The request field each action's EnsembleError is about (sua_portal.http.exception_handler).
    domain_error_fields = {"train": "config", "import_members": "members", "run": "ensemble"}

    def get_queryset(self) -> QuerySet[Ensemble]:
        return Ensemble.objects.filter(project__in=Project.objects.visible_to(self.request.user)).prefetch_related(
            "members")

    @extend_schema(request=TrainSerializer, responses={202: EnsembleSerializer, 404: _NOT_YOUR_PROJECT})
    @action(detail=False, methods=["post"])
    def train(self, request: Request) -> Response:
        body = TrainSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        project = _member_project(request, body.validated_data["project"])
        cohorts = list(Cohort.objects.filter(project=project, pk__in=body.validated_data["cohorts"]))
        validation = list(Cohort.objects.filter(project=project, pk__in=body.validated_data["validation_cohorts"]))
        if len(cohorts) != len(set(body.validated_data["cohorts"])):
            raise ValidationError({"cohorts": ["Some cohorts are not in this project."]})
        if Ensemble.objects.filter(project=project, name=body.validated_data["name"]).exists():
            raise ValidationError({"name": ["An ensemble of this name exists in the project."]})
        ensemble = services.start_training(project=project, name=body.validated_data["name"], cohorts=cohorts,
                                           validation=validation, config=body.validated_data["config"],
                                           user=request.user)
        return Response(EnsembleSerializer(ensemble).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request={"multipart/form-data": ImportSerializer},
                   responses={201: EnsembleSerializer, 200: DryRunSerializer, 404: _NOT_YOUR_PROJECT,
                              413: OpenApiResponse(description="the member files together are larger than "
                                                               "ENSEMBLE_MAX_UPLOAD_BYTES")})
    @action(detail=False, methods=["post"], url_path="import", allowed_roles=(roles.ADMIN,))
    def import_members(self, request: Request) -> Response:
        body = ImportSerializer(data={**request.data.dict(), "members": request.FILES.getlist("members")}
                                if hasattr(request.data, "dict") else request.data)
        body.is_valid(raise_exception=True)
        project = _member_project(request, body.validated_data["project"])
        data = body.validated_data
        if data["dry_run"]:
            checks = services.check_members(project=project, name=data["name"], files=data["members"],
                                            tile_size=data["tile_size"], level_downsample=data["level_downsample"])
            return Response(DryRunSerializer({
                "dry_run": True, "name": data["name"], "tile_size": data["tile_size"],
                "level_downsample": data["level_downsample"], "members": [c.as_dict() for c in checks],
            }).data)
        ensemble = services.import_members(
            project=project, name=data["name"], files=data["members"], tile_size=data["tile_size"],
            level_downsample=data["level_downsample"], user=request.user,
        )
        return Response(EnsembleSerializer(ensemble).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=RunSerializer, responses={
        202: HeatmapSerializer(many=True),
        409: OpenApiResponse(description="some slides have no known resolution (`slides` lists them): an admin "
                                         "sets mpp_override on them or their cohort first; nothing was queued")})
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str | None = None) -> Response:
        ensemble = self.get_object()
        body = RunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        slides = Slide.objects.filter(cohort__project=ensemble.project).filter(
            pk__in=body.validated_data["slides"]) | Slide.objects.filter(
            cohort__project=ensemble.project, cohort__in=body.validated_data["cohorts"])
        if not slides.exists():
            raise ValidationError({"slides": ["Name at least one slide or cohort of this project."]})
        queued = services.queue_inference(ensemble, slides.distinct().select_related("cohort"))
        return Response(HeatmapSerializer(queued, many=True).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(list=extend_schema(parameters=[
    OpenApiParameter("ensemble", int, description="only the heatmaps of this ensemble (an id)"),
    OpenApiParameter("slide", int, description="only the heatmaps of this slide (an id)"),
    OpenApiParameter("cohort", int, description="only the heatmaps of this cohort's slides (an id)")]))
class HeatmapViewSet(viewsets.ReadOnlyModelViewSet):
    """Per-slide inference: status, progress in percent, cancel, and the slide's NPRs."""

    serializer_class = HeatmapSerializer
    permission_classes = [IsAuthenticated, HasRole]
    allowed_roles = (roles.ADMIN, roles.RESEARCHER)
    list_filters = {"list": ("ensemble", "slide", "cohort")}

    def get_queryset(self) -> QuerySet[SlideHeatmap]:
        qs = SlideHeatmap.objects.filter(
            ensemble__project__in=Project.objects.visible_to(self.request.user)).select_related("slide", "ensemble")
        for key, field in (("ensemble", "ensemble"), ("slide", "slide"), ("cohort", "slide__cohort")):
            if (value := query_id(self.request, key)) is not None:
                qs = qs.filter(**{field: value})
        return qs

    @extend_schema(request=None, responses={200: HeatmapSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        heatmap = self.get_object()
        if not services.cancel(heatmap):
            raise ValidationError({"status": [f"Nothing to cancel: the slide is {heatmap.status}."]})
        heatmap.refresh_from_db()
        return Response(HeatmapSerializer(heatmap).data)

    @extend_schema(
        parameters=[OpenApiParameter("kind", str, enum=list(services.HEATMAP_KINDS), default="segmentation")],
        responses={(200, "image/png"): OpenApiTypes.BINARY,
                   304: OpenApiResponse(description="Not modified (If-None-Match had the ETag)")},
    )
    @action(detail=True, methods=["get"])
    def image(self, request: Request, pk: str | None = None) -> HttpResponseBase:
        """The heatmap as a coloured, transparent PNG (one pixel per heatmap cell) to lay over the slide."""
        heatmap = self.get_object()
        kind = request.query_params.get("kind", "segmentation")
        if kind not in services.HEATMAP_KINDS:
            raise ValidationError({"kind": [f"Choose one of {', '.join(services.HEATMAP_KINDS)}."]})
        if heatmap.status != SlideHeatmap.Status.DONE:
            raise Http404(f"The heatmaps of this slide are {heatmap.status}, not computed yet.")
        etag = f'"{heatmap.pk}-{kind}-{heatmap.finished.timestamp() if heatmap.finished else 0:.0f}"'
        if (unchanged := not_modified(request, etag)) is not None:
            unchanged["ETag"] = etag
            return unchanged
        response = HttpResponse(services.heatmap_png(heatmap, kind), content_type="image/png")
        response["ETag"] = etag
        # Private: access is per project. A recomputed heatmap gets a new ETag.
        response["Cache-Control"] = "private, max-age=3600"
        return response
