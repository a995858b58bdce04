"""The review API under /api/review/: verdicts, a slide's queue, the run's worklist, undo, slides marked
complete, disagreements and their settlement, the summary, the reviewed segmentation and exports.

Every query is limited to the caller's projects: another project's run, slide, region or cohort is a
404, as everywhere in this API (a project the caller is not a member of is never shown, so its
objects do not exist for them). Roles decide the rest (403): pathologists and admins give verdicts,
undo them and mark slides complete; admins see and settle disagreements and name a cohort's
reviewers; every member reads. A verdict on a run that is no longer the review run, or on a slide
the caller marked complete, is a 409 whose ``detail`` says so; an unknown verdict a 400.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from sua_portal.accounts import roles
from sua_portal.accounts.models import Project
from sua_portal.accounts.permissions import HasRole, IsAdminRoleOrReadOnly
from sua_portal.core.params import check_query_names, query_bool, query_choice, query_id, query_int
from sua_portal.http import not_modified
from sua_portal.review import services
from sua_portal.review.models import CohortReviewer, Verdict
from sua_portal.review.serializers import (
    AssignReviewerSerializer,
    CohortReviewerSerializer,
    CompletionSerializer,
    DisagreementSerializer,
    NextSlideSerializer,
    QueueSerializer,
    SaveVerdictSerializer,
    SettlementSerializer,
    SettleSerializer,
    SlideBodySerializer,
    SummarySerializer,
    UndoneSerializer,
    VerdictSerializer,
    WorklistSerializer,
)
from sua_portal.runs.models import Region, Run, RunSlide
from sua_portal.slides.models import Cohort

REVIEWERS = (roles.ADMIN, roles.PATHOLOGIST)
_CONFLICT = OpenApiResponse(description="the run is no longer the review run, or the caller marked the slide "
                                        "complete (detail says which)")
_NOT_FINISHED = OpenApiResponse(description="the run is not finished: it has no flags to review yet")
_SLIDE_NOT_IN_RUN = OpenApiResponse(description="no such run among the caller's projects, or the slide is not in it")


def _visible_projects(request: Request) -> QuerySet[Project]:
    return Project.objects.visible_to(request.user)


def _run_slide(run: Run, slide: int) -> RunSlide:
    row = (RunSlide.objects.filter(run=run, slide=slide).select_related("run", "slide__cohort__project", "heatmap")
           .first())
    if row is None:
        raise Http404("That slide is not in this run.")
    return row


def _cohort(request: Request, name: str = "cohort") -> Cohort | None:
    """The cohort ``?name=`` names among the caller's projects; None when absent, a 400 when not found."""
    if (pk := query_id(request, name)) is None:
        return None
    cohort = Cohort.objects.filter(project__in=_visible_projects(request), pk=pk).first()
    if cohort is None:
        raise ValidationError({name: ["No such cohort among your projects."]})
    return cohort


def _only_admins(request: Request, what: str) -> None:
    if not roles.has_role(request.user, roles.ADMIN):
        raise PermissionDenied(f"Only admins {what}.")


class VerdictViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The caller's own verdicts (never another reviewer's). Pathologists and admins give them."""

    permission_classes = [IsAuthenticated, HasRole]
    allowed_roles = REVIEWERS
    serializer_class = VerdictSerializer
    lookup_url_kwarg = "verdict"
    list_filters = {"list": ("run", "slide")}

    def get_queryset(self) -> QuerySet[Verdict]:
        if not self.request.user.is_authenticated:  # the schema generator's anonymous request
            return Verdict.objects.none()
        runs = Run.objects.filter(project__in=_visible_projects(self.request))
        if self.action != "list":
            return services.verdicts_of(self.request.user, runs=runs)
        return services.verdicts_of(self.request.user, runs=runs, run=query_id(self.request, "run"),
                                    slide=query_id(self.request, "slide"))

    @extend_schema(parameters=[OpenApiParameter("run", int), OpenApiParameter("slide", int)])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The caller's verdicts (of one run, on one slide), the latest first."""
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=SaveVerdictSerializer,
        responses={200: VerdictSerializer, 201: VerdictSerializer,
                   404: OpenApiResponse(description="no such region among the caller's projects"),
                   409: _CONFLICT},
    )
    def create(self, request: Request) -> Response:
        """Give (or change) the caller's verdict on a flagged region of the review run: 201 when new,
        200 when changed or when it was given already (a double submit changes nothing)."""
        body = SaveVerdictSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        region = Region.objects.filter(pk=data["region"], run__project__in=_visible_projects(request)).first()
        if region is None:
            raise Http404("No such region among your projects.")
        saved = services.save_verdict(region, request.user, data["verdict"], data.get("comment"))
        return Response(VerdictSerializer(saved.verdict).data,
                        status=status.HTTP_201_CREATED if saved.created else status.HTTP_200_OK)


class ReviewRunViewSet(viewsets.GenericViewSet):
    """A run under review: per slide its queue, the worklist, undo, completion, disagreements, the
    summary, the reviewed segmentation and the exports."""

    permission_classes = [IsAuthenticated, HasRole]
    allowed_roles = REVIEWERS
    lookup_url_kwarg = "run"
    serializer_class = QueueSerializer  # each action names its own
    list_filters = {"disagreements": ("slide", "settled")}

    def get_queryset(self) -> QuerySet[Run]:
        return Run.objects.filter(project__in=_visible_projects(self.request)).select_related("project")

    # --- a slide's queue, the worklist ---

    @extend_schema(parameters=[OpenApiParameter("slide", int, required=True)], responses={200: QueueSerializer,
                   404: _SLIDE_NOT_IN_RUN, 409: _NOT_FINISHED})
    @action(detail=True, methods=["get"])
    def queue(self, request: Request, run: str | None = None) -> Response:
        """The slide's flagged regions in the review range, highest score first, each with the caller's
        verdict; ``resume`` is the first region without one."""
        check_query_names(request, ["slide"])
        found = self.get_object()
        row = _run_slide(found, query_int(request, "slide", low=1))
        return Response(QueueSerializer(services.slide_queue(found, row, request.user)).data)

    @extend_schema(parameters=[OpenApiParameter("cohort", int, description="one cohort's slides")],
                   responses={200: WorklistSerializer, 409: _NOT_FINISHED})
    @action(detail=True, methods=["get"])
    def worklist(self, request: Request, run: str | None = None) -> Response:
        """The run's slides with flagged and (the caller's) reviewed counts: slides with regions left
        first, the most uncertain (highest flagged score) first; ``resume`` is where the caller goes on."""
        check_query_names(request, ["cohort"])
        found = self.get_object()
        return Response(WorklistSerializer(services.worklist(found, request.user, cohort=_cohort(request))).data)

    @extend_schema(parameters=[OpenApiParameter("after", int, description="the slide the caller is on"),
                               OpenApiParameter("cohort", int)],
                   responses={200: NextSlideSerializer, 409: _NOT_FINISHED})
    @action(detail=True, methods=["get"], url_path="next-slide")
    def next_slide(self, request: Request, run: str | None = None) -> Response:
        """The next slide in worklist order with regions left for the caller, and its first such region."""
        check_query_names(request, ["after", "cohort"])
        found = self.get_object()
        after = query_id(request, "after")
        place = services.next_slide(found, request.user, after=after, cohort=_cohort(request))
        return Response(NextSlideSerializer({"next": place}).data)

    # --- undo, completion ---

    @extend_schema(request=SlideBodySerializer, responses={200: UndoneSerializer, 404: _SLIDE_NOT_IN_RUN,
                   409: OpenApiResponse(description="nothing to undo, not the review run, or the slide is complete")})
    @action(detail=True, methods=["post"])
    def undo(self, request: Request, run: str | None = None) -> Response:
        """Take back the caller's last verdict change on the slide (the Z key): the verdict before it returns."""
        found, row = self._slide_from_body(request)
        return Response(UndoneSerializer(services.undo_last(found, row, request.user)).data)

    @extend_schema(request=SlideBodySerializer, responses={200: CompletionSerializer, 404: _SLIDE_NOT_IN_RUN,
                   409: OpenApiResponse(description="regions without the caller's verdict (unreviewed says how "
                                                    "many), or not the review run")})
    @action(detail=True, methods=["post"])
    def complete(self, request: Request, run: str | None = None) -> Response:
        """Mark the slide review complete for the caller; every flagged region needs their verdict first."""
        found, row = self._slide_from_body(request)
        done = services.complete_slide(found, row, request.user)
        return Response(CompletionSerializer({"slide": row.slide_id, "complete": True,
                                              "completed": done.completed}).data)

    @extend_schema(request=SlideBodySerializer, responses={200: CompletionSerializer, 404: _SLIDE_NOT_IN_RUN,
                   409: _CONFLICT})
    @action(detail=True, methods=["post"])
    def reopen(self, request: Request, run: str | None = None) -> Response:
        """Open a slide the caller marked complete to their verdicts again."""
        found, row = self._slide_from_body(request)
        services.reopen_slide(found, row, request.user)
        return Response(CompletionSerializer({"slide": row.slide_id, "complete": False, "completed": None}).data)

    def _slide_from_body(self, request: Request) -> tuple[Run, RunSlide]:
        body = SlideBodySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        found = self.get_object()
        return found, _run_slide(found, body.validated_data["slide"])

    # --- disagreements ---

    @extend_schema(parameters=[OpenApiParameter("slide", int), OpenApiParameter("settled", bool)],
                   responses=DisagreementSerializer(many=True))
    @action(detail=True, methods=["get"])
    def disagreements(self, request: Request, run: str | None = None) -> Response:
        """Admins: regions whose reviewers gave different verdicts, highest score first, with each verdict
        (and the reviewer's slot) and the settlement if there is one."""
        _only_admins(request, "see the reviewers' disagreements")
        found = self.get_object()
        slide = query_id(request, "slide")
        row = _run_slide(found, slide) if slide else None
        items = services.disagreements(found, run_slide=row, settled=query_bool(request, "settled"))
        page = self.paginate_queryset(items)  # type: ignore[arg-type]
        return self.get_paginated_response(DisagreementSerializer(page, many=True).data)

    @extend_schema(request=SettleSerializer, responses={
        200: SettlementSerializer, 201: SettlementSerializer,
        404: OpenApiResponse(description="no such run, or the region is not one of the run's"),
        409: OpenApiResponse(description="the reviewers of the region do not disagree")})
    @action(detail=True, methods=["post"])
    def settle(self, request: Request, run: str | None = None) -> Response:
        """Admins: settle a disagreement with a verdict (201; 200 when it replaces an earlier settlement)."""
        _only_admins(request, "settle disagreements")
        body = SettleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        found = self.get_object()
        region = Region.objects.filter(run=found, pk=data["region"]).select_related("run_slide").first()
        if region is None:
            raise Http404("No such region in this run.")
        settlement, created = services.settle(found, region, request.user, data["verdict"], data["comment"])
        return Response(SettlementSerializer(settlement).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    # --- the loop closed: summary, reviewed segmentation, exports ---

    @extend_schema(responses={200: SummarySerializer, 409: _NOT_FINISHED})
    @action(detail=True, methods=["get"])
    def summary(self, request: Request, run: str | None = None) -> Response:
        """Per run and cohort: flagged, reviewed, confirmed, rejected, unsure and disputed regions and the
        precision of the flags by the verdicts beside the calibration's (``expected_precision``). A caller
        who may review (a pathologist) counts their own verdicts only (``view`` is "own")."""
        return Response(SummarySerializer(services.summary(self.get_object(), request.user)).data)

    @extend_schema(
        parameters=[OpenApiParameter("slide", int, required=True),
                    OpenApiParameter("type", str, enum=list(services.MASK_TYPES), default="tiff")],
        responses={(200, "image/tiff"): OpenApiTypes.BINARY, (200, "image/png"): OpenApiTypes.BINARY,
                   (200, "application/geo+json"): OpenApiTypes.OBJECT,
                   304: OpenApiResponse(description="Not modified"), 404: _SLIDE_NOT_IN_RUN, 409: _NOT_FINISHED,
                   410: OpenApiResponse(description="the slide's heatmaps were deleted or changed since the run")},
    )
    @action(detail=True, methods=["get"])
    def reviewed(self, request: Request, run: str | None = None) -> HttpResponseBase:
        """The slide's reviewed segmentation: the original positives of the review range plus the regions
        confirmed as tumor, as a pyramidal TIFF (download), GeoJSON polygons (level-0 pixels) or PNG
        (the viewer's layer, one pixel per heatmap cell)."""
        check_query_names(request, ["slide", "type"])
        found = self.get_object()
        row = _run_slide(found, query_int(request, "slide", low=1))
        kind = query_choice(request, "type", services.MASK_TYPES) or "tiff"
        state = services.reviewed(found, row, request.user)
        etag = state.etag(kind)
        if (unchanged := not_modified(request, etag)) is not None:
            unchanged["ETag"] = etag
            return unchanged
        response: HttpResponseBase
        if kind == "png":
            response = HttpResponse(services.mask_png(state), content_type="image/png")
        elif kind == "geojson":
            response = HttpResponse(json.dumps(services.mask_geojson(state)), content_type="application/geo+json")
            response["Content-Disposition"] = f'attachment; filename="{row.name}-reviewed.geojson"'
        else:
            response = HttpResponse(services.mask_tiff(state), content_type="image/tiff")
            response["Content-Disposition"] = f'attachment; filename="{row.name}-reviewed.tiff"'
        response["ETag"] = etag
        response["Cache-Control"] = "private, no-cache"  # changes with every verdict: ask again, 304 when the same
        return response

    @extend_schema(
        parameters=[OpenApiParameter("type", str, enum=list(services.EXPORT_TYPES), required=True),
                    OpenApiParameter("slide", int, description="required for geojson and xml")],
        responses={(200, "application/geo+json"): OpenApiTypes.OBJECT, (200, "application/xml"): OpenApiTypes.BINARY,
                   (200, "text/csv"): OpenApiTypes.BINARY, 404: _SLIDE_NOT_IN_RUN, 409: _NOT_FINISHED},
    )
    @action(detail=True, methods=["get"])
    def export(self, request: Request, run: str | None = None) -> HttpResponseBase:
        """The flagged regions of the review range with their verdicts: GeoJSON that QuPath imports
        (``properties.classification`` with name and colour per verdict), ASAP XML (a group per verdict)
        or CSV (WKT outlines); level-0 pixels. Unreviewed regions are in class "Unreviewed"."""
        check_query_names(request, ["type", "slide"])
        found = self.get_object()
        kind = query_choice(request, "type", services.EXPORT_TYPES)
        if kind is None:
            raise ValidationError({"type": [f"Choose one of {', '.join(services.EXPORT_TYPES)}."]})
        slide = query_id(request, "slide")
        if kind != "csv" and not slide:
            raise ValidationError({"slide": ["QuPath and ASAP annotate one image at a time: name the slide."]})
        row = _run_slide(found, slide) if slide else None
        body, content_type, filename = services.export(found, request.user, kind, run_slide=row)
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class CohortReviewerViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The named reviewers of cohorts (first and second, the second blind to the first). Admins name
    them; a cohort naming none is open to every pathologist of its project."""

    permission_classes = [IsAuthenticated, IsAdminRoleOrReadOnly]
    serializer_class = CohortReviewerSerializer
    lookup_url_kwarg = "assignment"
    list_filters = {"list": ("cohort",)}

    def get_queryset(self) -> QuerySet[CohortReviewer]:
        found = CohortReviewer.objects.filter(cohort__project__in=_visible_projects(self.request)).select_related(
            "cohort", "reviewer")
        if self.action == "list" and (cohort := _cohort(self.request)) is not None:
            found = found.filter(cohort=cohort)
        return found

    @extend_schema(parameters=[OpenApiParameter("cohort", int)])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=AssignReviewerSerializer, responses={
        201: CohortReviewerSerializer, 404: OpenApiResponse(description="no such cohort among the caller's projects"),
        409: OpenApiResponse(description="the slot is taken, or the user is a reviewer of the cohort already")})
    def create(self, request: Request) -> Response:
        """Name a member (a pathologist or admin) the first or second reviewer of a cohort."""
        body = AssignReviewerSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        cohort = Cohort.objects.filter(pk=data["cohort"], project__in=_visible_projects(request)).select_related(
            "project").first()
        if cohort is None:
            raise Http404("No such cohort among your projects.")
        user = get_user_model().objects.filter(pk=data["reviewer"]).first()
        if user is None or not cohort.project.has_member(user):
            raise ValidationError({"reviewer": [f"No such member of project {cohort.project.name}."]})
        made = services.assign_reviewer(cohort, user, int(data["slot"]), by=request.user)
        return Response(CohortReviewerSerializer(made).data, status=status.HTTP_201_CREATED)
