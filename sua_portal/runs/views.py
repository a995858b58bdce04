"""The runs API: start, read, run again, choose for review; regions, per-slide figures and downloads."""

from __future__ import annotations

import csv
import io
import mimetypes
from typing import Any

from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from sua_portal.accounts import roles
from sua_portal.accounts.models import Project
from sua_portal.accounts.permissions import HasRole
from sua_portal.core.params import query_bool, query_id, query_int
from sua_portal.ensembles.models import Ensemble
from sua_portal.http import not_modified
from sua_portal.runs import services
from sua_portal.runs.models import Run, RunSlide
from sua_portal.runs.serializers import (
    RegionSerializer,
    RunDetailSerializer,
    RunSerializer,
    RunSlideSerializer,
    StartRunSerializer,
)
from sua_portal.slides.models import Cohort

MASK_METHODS = ("sua", "baseline")
MASK_TYPES = ("png", "tiff")


def slides_csv(run: Run) -> str:
    """The per-slide table: one row per slide and range."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["slide", "cohort", "role", "domain", "has_tumor", "lower", "upper", "nprs", "true_fns", "flagged",
                     "dice_before", "dice_sua", "dice_baseline", "changed_sua", "changed_baseline", "added_after_run"])
    ranges = list(run.range_set.all())
    for row in run.slide_set.all():
        for run_range in ranges:
            f = row.figure(run_range.index)
            writer.writerow([row.name, row.cohort_name, row.role, row.domain, row.has_tumor, run_range.lower,
                             run_range.upper, f.get("nprs"), f.get("true_fns"), f.get("flagged"),
                             f.get("dice_before"), f.get("dice_sua"), f.get("dice_baseline"),
                             f.get("changed_sua"), f.get("changed_baseline"), row.added_after_run])
    return out.getvalue()


class RunViewSet(viewsets.ReadOnlyModelViewSet):
    """Runs of the caller's projects. Researchers and admins start them; every member reads them."""

    permission_classes = [IsAuthenticated, HasRole]
    allowed_roles = (roles.ADMIN, roles.RESEARCHER)
    domain_error_fields = {"create": "settings"}
    # Each list's filters; any other query parameter is a 400 naming it (core.pagination).
    list_filters = {"list": ("project", "slide", "review"), "slides": (), "regions": ("slide", "flagged", "range")}

    def get_serializer_class(self) -> type[RunSerializer]:
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer

    def get_queryset(self) -> QuerySet[Run]:
        runs = Run.objects.filter(project__in=Project.objects.visible_to(self.request.user)).select_related(
            "created_by").prefetch_related("cohorts", "range_set")
        if self.action != "list":
            return runs
        if (project := query_id(self.request, "project")) is not None:
            runs = runs.filter(project=project)
        if (slide := query_id(self.request, "slide")) is not None:
            runs = runs.filter(cohorts__cohort__slides=slide)
        if query_bool(self.request, "review"):
            chosen = [services.review_run(p) for p in set(runs.values_list("project", flat=True))]
            runs = runs.filter(pk__in=[r.pk for r in chosen if r is not None])
        return runs.distinct()

    @extend_schema(
        parameters=[OpenApiParameter("project", int), OpenApiParameter("slide", int, description="runs holding it"),
                    OpenApiParameter("review", bool, description="only each project's review run")],
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=StartRunSerializer,
                   responses={202: RunSerializer, 404: OpenApiResponse(description="the project is not one of the caller's")})
    def create(self, request: Request) -> Response:
        """Start a run: checked at once (400 naming the cohort, slide or setting), then queued."""
        body = StartRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            project = Project.objects.visible_to(request.user).get(pk=data["project"])
        except Project.DoesNotExist:
            raise Http404("No such project.") from None
        ensemble = Ensemble.objects.filter(project=project, pk=data["ensemble"]).first()
        if ensemble is None:
            raise ValidationError({"ensemble": ["No such ensemble in this project."]})
        cohorts = {c.pk: c for c in Cohort.objects.filter(project=project,
                                                           pk__in=[*data["validation_cohorts"], *data["test_cohorts"]])}
        for field in ("validation_cohorts", "test_cohorts"):
            missing = [pk for pk in data[field] if pk not in cohorts]
            if missing:
                raise ValidationError({field: [f"Cohort(s) {', '.join(map(str, missing))} are not in this project."]})
        run = services.start_run(
            project=project, ensemble=ensemble, validation=[cohorts[pk] for pk in data["validation_cohorts"]],
            test=[cohorts[pk] for pk in data["test_cohorts"]], values=data["settings"], name=data["name"],
            user=request.user,
        )
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: RunSerializer})
    @action(detail=True, methods=["post"])
    def again(self, request: Request, pk: str | None = None) -> Response:
        """A new run from a copy of this run's settings and cohorts."""
        run = services.run_again(self.get_object(), user=request.user)
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: RunSerializer})
    @action(detail=True, methods=["post"])
    def review(self, request: Request, pk: str | None = None) -> Response:
        """Make this finished run the one whose flags the project's pathologists review."""
        return Response(RunSerializer(services.choose_review_run(self.get_object())).data)

    @extend_schema(responses=RunSlideSerializer(many=True))
    @action(detail=True, methods=["get"])
    def slides(self, request: Request, pk: str | None = None) -> Response:
        """Per slide: role, domain, and per range NPRs, true FNs, flagged, Dice before and after, changed."""
        page = self.paginate_queryset(RunSlide.objects.filter(run=self.get_object()))
        return self.get_paginated_response(RunSlideSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("slide", int), OpenApiParameter("flagged", bool),
                    OpenApiParameter("range", int, description="range index, 0-based")],
        responses=RegionSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def regions(self, request: Request, pk: str | None = None) -> Response:
        """The run's negative prediction regions as level-0 polygons, highest score first per slide and range."""
        run = self.get_object()
        slide = query_id(request, "slide")
        index = request.query_params.get("range")
        run_range = None
        if index is not None:
            run_range = run.range_set.filter(index=query_int(request, "range", low=0)).first()
            if run_range is None:
                raise ValidationError({"range": [f"The run has ranges 0 to {len(run.ranges) - 1}."]})
        regions = services.regions_of(run, slide=slide, flagged=query_bool(request, "flagged"), run_range=run_range)
        page = self.paginate_queryset(regions)
        return self.get_paginated_response(RegionSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("slide", int, required=True), OpenApiParameter("range", int, required=True),
                    OpenApiParameter("method", str, enum=[*MASK_METHODS], required=True),
                    OpenApiParameter("type", str, enum=[*MASK_TYPES], default="tiff")],
        responses={(200, "image/tiff"): OpenApiTypes.BINARY, (200, "image/png"): OpenApiTypes.BINARY,
                   304: OpenApiResponse(description="Not modified")},
    )
    @action(detail=True, methods=["get"])
    def mask(self, request: Request, pk: str | None = None) -> HttpResponseBase:
        """A slide's SUA- or baseline-refined mask: pyramidal TIFF (download) or PNG (the viewer's layer)."""
        run = self.get_object()
        row = RunSlide.objects.filter(run=run, slide=query_int(request, "slide", low=1)).first()
        if row is None:
            raise Http404("That slide is not in this run.")
        index = query_int(request, "range", low=0, high=max(len(row.masks) - 1, 0))
        method, kind = request.query_params.get("method"), request.query_params.get("type", "tiff")
        if method not in MASK_METHODS:
            raise ValidationError({"method": [f"Choose one of {', '.join(MASK_METHODS)}."]})
        if kind not in MASK_TYPES:
            raise ValidationError({"type": [f"Choose one of {', '.join(MASK_TYPES)}."]})
        if index >= len(row.masks):
            raise Http404("This slide has no refined masks.")
        etag = f'"run{run.pk}-{row.pk}-{index}-{method}-{kind}"'
        if (unchanged := not_modified(request, etag)) is not None:
            unchanged["ETag"] = etag
            return unchanged
        name = row.masks[index][method]
        if kind == "png":
            response: HttpResponseBase = HttpResponse(services.mask_png(name), content_type="image/png")
        else:
            response = FileResponse(default_storage.open(name, "rb"), content_type="image/tiff", as_attachment=True,
                                    filename=f"{row.name}-{method}-refined-range{index}.tiff")
        response["ETag"] = etag
        response["Cache-Control"] = "private, max-age=86400"  # a run never changes
        return response

    @extend_schema(responses={(200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY,
                                                            description="JSON, CSV, PNG, SVG, HTML, PDF or zip"),
                              404: OpenApiResponse(description="no such file in this run (or not written yet)")})
    @action(detail=True, methods=["get"], url_path=r"files/(?P<name>[A-Za-z0-9_.-]+)")
    def files(self, request: Request, pk: str | None = None, name: str = "") -> HttpResponseBase:
        """A download of the run at a permanent URL: report.json, .csv tables, figures, report.html/.pdf,
        slides.csv and bundle.zip (``sua evaluate bundle/manifest.json`` reproduces report.json)."""
        run = self.get_object()
        if name == "slides.csv":
            table = HttpResponse(slides_csv(run), content_type="text/csv; charset=utf-8")
            table["Content-Disposition"] = f'attachment; filename="run-{run.pk}-slides.csv"'
            return table
        stored = run.files.get(name)
        if stored is None:
            raise Http404(f"The run has no file {name!r}." if run.status == Run.Status.DONE
                          else f"The run is {run.status}: its files come when it is done.")
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        inline = name.endswith((".html", ".svg", ".png", ".json"))
        response = FileResponse(default_storage.open(stored, "rb"), content_type=content_type,
                                as_attachment=not inline, filename=f"run-{run.pk}-{name}")
        if name.endswith((".html", ".svg")):
            response["Content-Security-Policy"] = "sandbox"  # a document to read, never a script on our origin
        response["Cache-Control"] = "private, max-age=86400"  # a run's files never change
        return response
