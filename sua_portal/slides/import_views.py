"""The cohort import API (docs/cohort-import.md): preview, start, send each file in chunks, make each slide.

``POST /api/projects/{id}/imports/preview/``   the plan of the dropped files and manifest (nothing stored)
``POST /api/projects/{id}/imports/``           start: cohorts, items and one resumable upload per file
``GET|DELETE /api/imports/{id}/``              the import's state (offsets, outcomes); give it up
``GET|PUT /api/imports/{id}/parts/{part}/``    one file's offset; a chunk (``Content-Range``), as /api/uploads/
``POST /api/imports/{id}/items/{n}/complete/`` make slide n from its files; the item says what came of it

Admins only for changes; every lookup is limited to the caller's projects (others are a 404).
"""

from __future__ import annotations

from typing import IO, Any, cast

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from analysis.cohort_import import FileEntry
from sua_portal.accounts.models import Project
from sua_portal.accounts.permissions import IsAdminRoleOrReadOnly
from sua_portal.slides import imports, services
from sua_portal.slides.models import Cohort, CohortImport, ImportItem, ImportPart
from sua_portal.slides.views import chunk_position

_MAX_PATH = 1000


def _request_limit() -> int:
    return int(settings.IMPORT_MAX_REQUEST_BYTES)


class ZipEntrySerializer(serializers.Serializer):  # type: ignore[type-arg]
    path = serializers.CharField(max_length=_MAX_PATH, trim_whitespace=False)
    size = serializers.IntegerField(min_value=0)


class DroppedFileSerializer(serializers.Serializer):  # type: ignore[type-arg]
    path = serializers.CharField(max_length=_MAX_PATH, trim_whitespace=False,
                                 help_text="relative to what was dropped, '/'-separated (webkitRelativePath)")
    size = serializers.IntegerField(min_value=0, help_text="bytes")
    entries = ZipEntrySerializer(many=True, required=False, allow_null=True,
                                 help_text="a .zip's files, when the browser read its directory")


class ImportRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    files = DroppedFileSerializer(many=True, allow_empty=False,
                                  help_text="every dropped file (or a dropped zip's entries)")
    manifest = serializers.CharField(required=False, default="", allow_blank=True, trim_whitespace=False,
                                     help_text="the CSV manifest's text: slide, split, domain, cohort, annotation, "
                                               "tumor_free, mpp (only slide is required)")
    manifest_path = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=_MAX_PATH,
                                          help_text="the dropped file the manifest was read from")
    cohort = serializers.CharField(max_length=200, help_text="the cohort's name (several: 'NAME SPLIT (DOMAIN)')")
    split = serializers.ChoiceField(choices=Cohort.Split.values, default=Cohort.Split.TEST,
                                    help_text="for slides the manifest gives no split")
    domain = serializers.CharField(max_length=100, default="in-domain",
                                   help_text="for slides the manifest gives no domain")
    archive = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=500,
                                    help_text="the dropped zip whose entries `files` lists (uploaded whole)")
    archive_size = serializers.IntegerField(required=False, allow_null=True, min_value=1)

    def to_request(self) -> imports.ImportRequest:
        data = self.validated_data
        files = tuple(
            FileEntry(f["path"], f["size"], None if f.get("entries") is None else
                      tuple(FileEntry(e["path"], e["size"]) for e in f["entries"]))
            for f in data["files"]
        )
        return imports.ImportRequest(
            files=files, manifest=data.get("manifest") or "", manifest_path=data.get("manifest_path") or None,
            cohort=data["cohort"], split=data["split"], domain=data["domain"], archive=data.get("archive") or None,
            archive_size=data.get("archive_size"),
        )


def _project(request: Request, pk: Any) -> Project:
    return get_object_or_404(Project.objects.visible_to(request.user), pk=pk)


class ProjectImportViewSet(viewsets.ViewSet):
    """Preview and start cohort imports of one project (admins)."""

    permission_classes = [IsAuthenticated, IsAdminRoleOrReadOnly]
    parser_classes = [JSONParser]
    body_limits = {"preview": _request_limit, "create": _request_limit}

    def _read(self, request: Request) -> imports.ImportRequest:
        body = ImportRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return body.to_request()

    @extend_schema(request=ImportRequestSerializer, responses={
        200: OpenApiTypes.OBJECT,
        400: OpenApiResponse(description="the plan has errors: `errors` lists them, `plan` is the whole plan")},
        summary="The plan of an import: what would be created, left out, unmatched (nothing is stored)")
    def preview(self, request: Request, project_pk: str | None = None) -> Response:
        project = _project(request, project_pk)
        return Response(imports.preview(project, self._read(request)))

    @extend_schema(request=ImportRequestSerializer, responses={
        201: OpenApiTypes.OBJECT,
        400: OpenApiResponse(description="the plan has errors (nothing was stored)")},
        summary="Start an import: the cohorts, one item per slide, one resumable upload per file")
    def create(self, request: Request, project_pk: str | None = None) -> Response:
        project = _project(request, project_pk)
        session = imports.start_import(project, self._read(request), user=request.user)
        return Response(imports.progress(session), status=status.HTTP_201_CREATED)


class CohortImportViewSet(mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    """An import under way: its state, its files' chunks, its slides made one by one."""

    permission_classes = [IsAuthenticated, IsAdminRoleOrReadOnly]
    # Chunks are read from the stream as they come; nothing parses a body here.
    parser_classes: list[Any] = []
    body_limits = {"part": services.max_upload_bytes}
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[CohortImport]:
        return CohortImport.objects.filter(project__in=Project.objects.visible_to(self.request.user))

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(imports.progress(self.get_object()))

    @extend_schema(request=None, responses={204: None}, summary="Cancel an import: its staged bytes go")
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance: CohortImport) -> None:
        imports.cancel_import(instance)

    @extend_schema(
        methods=["PUT"],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[
            OpenApiParameter("Content-Range", str, OpenApiParameter.HEADER, description="bytes START-END/SIZE"),
            OpenApiParameter("Upload-Offset", int, OpenApiParameter.HEADER, description="instead of Content-Range"),
        ],
        responses={200: OpenApiTypes.OBJECT, 409: OpenApiResponse(description="wrong offset: the body says which"),
                   413: OpenApiResponse(description="a chunk larger than the file")},
        summary="Send a chunk of one of the import's files",
    )
    @extend_schema(methods=["GET"], responses={200: OpenApiTypes.OBJECT}, summary="How far one file has come")
    @action(detail=True, methods=["get", "put"], url_path=r"parts/(?P<part_id>[0-9a-fA-F-]{36})")
    def part(self, request: Request, pk: str | None = None, part_id: str | None = None) -> Response:
        session = self.get_object()
        part = get_object_or_404(ImportPart.objects.filter(cohort_import=session), pk=part_id)
        if request.method == "PUT":
            offset, length = chunk_position(request, size=part.size_bytes, received=part.received_bytes)
            part = imports.receive_part_chunk(part, offset=offset, length=length,
                                              stream=cast(IO[bytes], request._request))
        return Response({"id": str(part.pk), "path": part.path, "size": part.size_bytes, "offset": part.received_bytes})

    @extend_schema(request=None, responses={
        200: OpenApiTypes.OBJECT,
        409: OpenApiResponse(description="a file of the slide has not all arrived (the body says which, and the "
                                         "offset)"),
        410: OpenApiResponse(description="the uploaded bytes are gone from the server")},
        summary="Make slide n of the import from its files: created, rejected (with the reason) or skipped")
    @action(detail=True, methods=["post"], url_path=r"items/(?P<position>[0-9]+)/complete")
    def complete(self, request: Request, pk: str | None = None, position: str | None = None) -> Response:
        session = self.get_object()
        item = get_object_or_404(ImportItem.objects.filter(cohort_import=session), position=position)
        item = imports.complete_item(item, user=request.user)
        answer = imports.progress(session)
        return Response({**next(i for i in answer["items"] if i["position"] == item.position), "done": answer["done"]})
