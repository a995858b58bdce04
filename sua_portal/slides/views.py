"""The slides API: cohorts, slide uploads (whole or resumable), annotations, DeepZoom tiles and images.

Every query is limited to the caller's projects, so another project's cohort,
slide or upload is a 404; changes are for the admin role (403 for others,
before anything is looked up).  Problems with the input come back as 4xx with
a sentence in ``detail``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import IO, Any, NamedTuple, TypeVar, cast

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import DisallowedHost
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.parsers import DataAndFiles, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sua_portal.accounts.authentication import PersonalTokenAuthentication
from sua_portal.accounts.models import Project
from sua_portal.accounts.permissions import IsAdminRoleOrReadOnly
from sua_portal.core.params import check_query_names, query_bool, query_choice, query_id, query_int
from sua_portal.core.schema import ErrorSerializer, PortalAutoSchema
from sua_portal.errors import Unreadable
from sua_portal.http import not_modified
from sua_portal.slides import services, tiles
from sua_portal.slides.models import Annotation, Cohort, Slide, SlideUpload
from sua_portal.slides.serializers import (
    AnnotationSerializer,
    AnnotationUploadSerializer,
    CohortCreateSerializer,
    CohortSerializer,
    SlideSerializer,
    SlideUploadFormSerializer,
    SlideUploadSerializer,
    UploadStartSerializer,
)

#: Tiles, thumbnails and descriptors depend only on the file (its SHA-256): browsers may keep them.
IMAGE_MAX_AGE = 24 * 3600
# Multipart boundaries, headers and form fields around the file: a body this much bigger than its file's
# limit is refused unread (sua_portal.core.bodies).
_MULTIPART_SLACK = 64 * 1024


# --------------------------------------------------------------------------- helpers


class _UnsafeFileName(MultiPartParserError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _NameCheckingDjangoParser(DjangoMultiPartParser):
    """Django's parser keeps only the last path component of a file name and drops characters it cannot
    print; we check the name as sent instead (:func:`services.check_file_name`: after Unicode normalisation,
    a path or an empty name is refused with what is wrong) and keep its normalised form."""

    def sanitize_file_name(self, file_name: str) -> str | None:
        try:
            name = services.check_file_name(html.unescape(file_name))
        except services.SlideRejected as exc:
            raise _UnsafeFileName(str(exc)) from None
        return super().sanitize_file_name(name)


class StrictMultiPartParser(MultiPartParser):
    """multipart/form-data whose file names are checked ("../x.svs", "a/b.svs" and invisible names are a 400)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> DataAndFiles:
        parser_context = parser_context or {}
        request = parser_context["request"]
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        try:
            parser = _NameCheckingDjangoParser(meta, stream, request.upload_handlers, parser_context.get("encoding"))
            data, files = parser.parse()
        except _UnsafeFileName as exc:
            raise ParseError(exc.message) from None
        except MultiPartParserError as exc:
            raise ParseError(f"The multipart form cannot be read: {exc}") from None
        return DataAndFiles(data, files)


def _visible_projects(user: Any) -> QuerySet[Project]:
    return Project.objects.visible_to(user)


def _to_disk(request: Request) -> None:
    """Uploaded files of this request go to a temporary file on disk, whatever their size (large-image opens paths)."""
    django_request: HttpRequest = request._request
    # Session authentication's CSRF check may have parsed the form already (then small files sit in
    # memory and services spool them to disk).
    if not hasattr(django_request, "_files"):
        django_request.upload_handlers = [TemporaryFileUploadHandler(django_request)]


def _slide_form_limit() -> int:
    """The largest multipart body of a slide sent whole (RequestBodyMiddleware refuses more, unread)."""
    return services.max_upload_bytes() + _MULTIPART_SLACK


def _annotation_form_limit() -> int:
    return services.MAX_ANNOTATION_BYTES + _MULTIPART_SLACK


# --------------------------------------------------------------------------- cohorts


def _name_taken(project: Project, name: str) -> str:
    archived = Cohort.objects.filter(project=project, name=name, archived=True).exists()
    return (f"A cohort called {name!r} exists in this project" +
            (" (archived: restore it, or choose another name)." if archived else "."))


@extend_schema_view(list=extend_schema(parameters=[
    OpenApiParameter("project", int, description="only the cohorts of this project (an id)"),
    OpenApiParameter("archived", bool, description="true: the archived cohorts instead (without it, they are left out)"),
]))
class CohortViewSet(viewsets.ModelViewSet):
    """Cohorts of the caller's projects. Admins create them and upload slides into them; PATCH ``archived``
    deletes one softly (hidden from lists, its slides and runs kept) or brings it back, DELETE removes it."""

    permission_classes = [IsAuthenticated, IsAdminRoleOrReadOnly]
    parser_classes = [JSONParser, StrictMultiPartParser]
    # The query parameters each list takes besides limit and offset (others are a 400 naming them).
    list_filters = {"list": ("project", "archived"), "slides": ()}
    # The largest request body of each action (sua_portal.core.bodies; others take DATA_UPLOAD_MAX_MEMORY_SIZE).
    body_limits = {"slides": _slide_form_limit}

    def get_queryset(self) -> QuerySet[Cohort]:
        cohorts = Cohort.objects.filter(project__in=_visible_projects(self.request.user)).annotate(
            slide_count=Count("slides", distinct=True),
            ready_count=Count("slides", filter=Q(slides__status=Slide.Status.READY), distinct=True),
        )
        if (project := query_id(self.request, "project")) is not None:
            cohorts = cohorts.filter(project_id=project)
        if self.action == "list":
            cohorts = cohorts.filter(archived=bool(query_bool(self.request, "archived")))
        return cohorts

    def get_serializer_class(self) -> Any:
        return CohortCreateSerializer if self.action == "create" else CohortSerializer

    @extend_schema(request=CohortCreateSerializer, responses={
        201: CohortSerializer, 404: OpenApiResponse(description="the project is not one of the caller's")})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = CohortCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        project = get_object_or_404(_visible_projects(request.user), pk=body.validated_data["project"])
        if Cohort.objects.filter(project=project, name=body.validated_data["name"]).exists():
            raise ValidationError({"name": [_name_taken(project, body.validated_data["name"])]})
        cohort = body.save(project=project)
        return Response(CohortSerializer(cohort).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer: Any) -> None:
        name = serializer.validated_data.get("name")
        instance = serializer.instance
        if name and Cohort.objects.filter(project=instance.project, name=name).exclude(pk=instance.pk).exists():
            raise ValidationError({"name": [_name_taken(instance.project, name)]})
        serializer.save()


    @extend_schema(
        methods=["GET"], responses=SlideSerializer(many=True), summary="The slides of the cohort",
    )
    @extend_schema(
        methods=["POST"],
        request={"multipart/form-data": SlideUploadFormSerializer},
        responses={201: SlideSerializer, 400: OpenApiResponse(description="not a slide, bad name, empty, truncated"),
                   409: OpenApiResponse(description="the same file (SHA-256) is in the cohort"),
                   413: OpenApiResponse(description="bigger than SLIDE_MAX_UPLOAD_BYTES")},
        summary="Upload a slide in one request (streamed to disk, hashed, checked, then stored)",
    )
    @action(detail=True, methods=["get", "post"])
    def slides(self, request: Request, pk: str | None = None) -> Response:
        if request.method == "POST":
            _to_disk(request)
        cohort = self.get_object()
        if request.method == "GET":
            slides = cohort.slides.select_related("uploaded_by", "cohort").annotate(annotation_count=Count("annotations"))
            page = self.paginate_queryset(slides)
            return self.get_paginated_response(SlideSerializer(page, many=True).data)
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationError({"file": ["Send the slide as the multipart field 'file'."]})
        slide = services.store_uploaded_slide(cohort, upload, user=request.user)
        return Response(SlideSerializer(slide).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=UploadStartSerializer,
        responses={201: SlideUploadSerializer, 413: OpenApiResponse(description="bigger than SLIDE_MAX_UPLOAD_BYTES")},
        summary="Start a resumable upload: then PUT chunks to /api/uploads/{id}/ and POST .../complete/",
    )
    @action(detail=True, methods=["post"])
    def uploads(self, request: Request, pk: str | None = None) -> Response:
        cohort = self.get_object()
        body = UploadStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = services.start_upload(
            cohort, filename=body.validated_data["filename"], size=body.validated_data["size"],
            sha256=body.validated_data["sha256"], user=request.user,
        )
        return Response(SlideUploadSerializer(upload).data, status=status.HTTP_201_CREATED)


# --------------------------------------------------------------------------- resumable uploads


def chunk_position(request: Request, *, size: int, received: int) -> tuple[int, int]:
    """Where a chunk of a resumable upload goes and how long it is: ``Content-Range: bytes START-END/SIZE``
    (SIZE the upload's), else an ``Upload-Offset`` header or ``?offset=``; the length is the body's."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    content_range = request.META.get("HTTP_CONTENT_RANGE")
    if content_range:
        offset, declared = services.parse_content_range(content_range, size=size)
        if declared != length:
            raise services.SlideRejected(
                f"Content-Range announces {declared} bytes but the body has {length}.", offset=received,
            )
        return offset, length
    raw = request.META.get("HTTP_UPLOAD_OFFSET") or request.query_params.get("offset")
    if raw is None or not str(raw).isdigit():
        raise services.SlideRejected(
            "Say where the chunk goes: Content-Range: bytes START-END/SIZE, or an Upload-Offset header.",
            offset=received,
        )
    return int(raw), length


class SlideUploadViewSet(mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """A resumable upload: GET tells the offset, PUT/PATCH sends a chunk, POST complete/ makes the slide.

    A chunk is the raw request body, placed by ``Content-Range: bytes START-END/SIZE``
    (or an ``Upload-Offset`` header / ``?offset=``); START must be the offset the
    server has, else 409 with the offset to go on from.
    """

    serializer_class = SlideUploadSerializer
    permission_classes = [IsAuthenticated, IsAdminRoleOrReadOnly]
    # Chunks are read from the stream as they come; nothing parses the body.
    parser_classes: list[Any] = []
    # A chunk is at most a whole slide (the view checks it against the upload's own size).
    body_limits = {"update": services.max_upload_bytes, "partial_update": services.max_upload_bytes}

    def get_queryset(self) -> QuerySet[SlideUpload]:
        return SlideUpload.objects.filter(cohort__project__in=_visible_projects(self.request.user))

    def perform_destroy(self, instance: SlideUpload) -> None:
        services.cancel_upload(instance)

    # PUT and PATCH both take a chunk.
    _chunk_schema = extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[
            OpenApiParameter("Content-Range", str, OpenApiParameter.HEADER, description="bytes START-END/SIZE"),
            OpenApiParameter("Upload-Offset", int, OpenApiParameter.HEADER, description="instead of Content-Range"),
        ],
        responses={200: SlideUploadSerializer, 409: OpenApiResponse(description="wrong offset: the body says which"),
                   413: OpenApiResponse(description="a chunk larger than SLIDE_MAX_UPLOAD_BYTES")},
    )

    @_chunk_schema
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        upload = self.get_object()
        offset, length = chunk_position(request, size=upload.size_bytes, received=upload.received_bytes)
        upload = services.receive_chunk(upload, offset=offset, length=length, stream=cast(IO[bytes], request._request))
        return Response(SlideUploadSerializer(upload).data)

    @_chunk_schema
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, **kwargs)

    @extend_schema(request=None, responses={
        201: SlideSerializer, 409: OpenApiResponse(description="bytes are missing (the body says the offset), or "
                                                          "the same file is in the cohort"),
        410: OpenApiResponse(description="the uploaded bytes are gone from the server: start again")})
    @action(detail=True, methods=["post"])
    def complete(self, request: Request, pk: str | None = None) -> Response:
        upload = self.get_object()
        slide = services.complete_upload(upload, user=request.user)
        return Response(SlideSerializer(slide).data, status=status.HTTP_201_CREATED)


# --------------------------------------------------------------------------- slides and annotations


@extend_schema_view(list=extend_schema(parameters=[
    OpenApiParameter("cohort", int, description="only the slides of this cohort (an id)")]))
class SlideViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Slides of the caller's projects (``?cohort=`` to pick one cohort); admins rename, label and delete."""

    serializer_class = SlideSerializer
    permission_classes = [IsAuthenticated, IsAdminRoleOrReadOnly]
    parser_classes = [JSONParser, StrictMultiPartParser]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    list_filters = {"list": ("cohort",)}
    body_limits = {"annotations": _annotation_form_limit}

    def get_queryset(self) -> QuerySet[Slide]:
        slides = (
            Slide.objects.filter(cohort__project__in=_visible_projects(self.request.user))
            .select_related("uploaded_by", "cohort")
            .annotate(annotation_count=Count("annotations"))
        )
        if (cohort := query_id(self.request, "cohort")) is not None:
            slides = slides.filter(cohort_id=cohort)
        return slides

    def perform_destroy(self, instance: Slide) -> None:
        services.delete_slide(instance)

    @extend_schema(request=None, responses={202: SlideSerializer}, summary="Check the slide again (queued)")
    @action(detail=True, methods=["post"])
    def check(self, request: Request, pk: str | None = None) -> Response:
        slide = services.recheck_slide(self.get_object())
        return Response(SlideSerializer(slide).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 409: OpenApiResponse(description="the file cannot be read")},
                   summary="What large-image reads from the file")
    @action(detail=True, methods=["get"])
    def metadata(self, request: Request, pk: str | None = None) -> Response:
        slide = self.get_object()
        body: dict[str, Any] = {"slide": SlideSerializer(slide).data}
        if slide.status == Slide.Status.FAILED:
            return Response(body)
        try:
            zoom = tiles.deep_zoom(services.local_path(slide))
        except (tiles.SlideReadError, FileNotFoundError) as exc:
            return Response({"detail": f"The slide cannot be read: {exc}"}, status=status.HTTP_409_CONFLICT)
        source_metadata = zoom.source.getMetadata()
        body["large_image"] = {k: v for k, v in source_metadata.items() if k != "frames"}
        body["deepzoom"] = {"tile_size": zoom.tile_size, "levels": zoom.max_level + 1, "overlap": 0, "format": "jpeg"}
        return Response(body)

    @extend_schema(methods=["GET"], responses=AnnotationSerializer(many=True), parameters=[
        OpenApiParameter("source", str, enum=list(Annotation.Source.values), description="only these annotations")])
    @extend_schema(
        methods=["POST"], request={"multipart/form-data": AnnotationUploadSerializer},
        responses={201: AnnotationSerializer,
                   400: OpenApiResponse(description="does not parse, outlines no tumor area (empty, points only, "
                                                    "no tumor group or class), or reaches outside the slide"),
                   409: OpenApiResponse(description="the slide has its ground truth already: send replace=true "
                                                    "to replace it (`annotation` is the one there)"),
                   413: OpenApiResponse(description="larger than annotation files may be")},
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def annotations(self, request: Request, pk: str | None = None) -> Response:
        if request.method == "POST":
            _to_disk(request)
        slide = self.get_object()
        if request.method == "GET":
            check_query_names(request, ["source"])
            rows = Annotation.objects.filter(slide=slide).select_related("author")
            if not slide.cohort.project.shows_truth_to(request.user):
                # Blind review: a pathologist does not see the ground truth of the slides they review.
                rows = rows.exclude(source=Annotation.Source.GROUND_TRUTH)
            if (source := query_choice(request, "source", Annotation.Source.values)) is not None:
                rows = rows.filter(source=source)
            return Response(AnnotationSerializer(rows, many=True).data)
        body = AnnotationUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        classes = [c.strip() for c in data.get("tumor_classes", "").split(",") if c.strip()] or None
        annotation = services.add_uploaded_annotation(
            slide, data["file"], source=data["source"], author=request.user, downsample=data.get("downsample"),
            tumor_classes=classes, label=data["label"], replace=data["replace"],
        )
        return Response(AnnotationSerializer(annotation).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"annotations/(?P<annotation_id>\d+)")
    def delete_annotation(self, request: Request, pk: str | None = None, annotation_id: str | None = None) -> Response:
        slide = self.get_object()
        services.delete_annotation(get_object_or_404(Annotation, slide=slide, pk=annotation_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --------------------------------------------------------------------------- images


# Tiles are the hottest path (a viewer asks for dozens a second): who the caller is and which file a
# slide is are remembered in Django's cache for a few seconds (SLIDE_IMAGE_ACCESS_CACHE_SECONDS), so a
# tile costs no database query. A removed membership or a signed-out session stops reaching tiles after
# at most that long. TileFastPathMiddleware (below) answers tiles through the same cache and the same
# access function; 0 turns caching, and with it the fast path, off.


def _remember(key: str, value: Any) -> None:
    seconds = float(settings.SLIDE_IMAGE_ACCESS_CACHE_SECONDS)
    if seconds > 0:
        cache.set(key, value, seconds)


def _session_key(session: str) -> str:
    return f"image-access:session:{session}"


def _token_key(token: str) -> str:
    return f"image-access:token:{token}"


def _caller_id_key(credential_key: str) -> str:
    # Next to each cached caller, their id alone: the tile fast path needs no more, and unpickling a
    # small int costs a fraction of a user object.
    return f"{credential_key}:id"


def _remember_caller(credential_key: str, answer: Any, user_id: int) -> None:
    """Cache an authenticator's ``answer`` for these credentials, and beside it the caller's id alone."""
    _remember(credential_key, answer)
    _remember(_caller_id_key(credential_key), user_id)


class _CachedTokenAuthentication(PersonalTokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        hit = cache.get(_token_key(key))
        if hit is not None:
            return cast(tuple[Any, Any], hit)
        result = super().authenticate_credentials(key)
        _remember_caller(_token_key(key), result, result[0].pk)
        return result


class _CachedSessionAuthentication(SessionAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        key = request._request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        # Only safe methods reach the image views, so there is no CSRF check to skip on a hit.
        hit = cache.get(_session_key(key)) if key else None
        if hit is not None:
            return (hit, None)
        result = super().authenticate(request)
        if result is not None and key:
            _remember_caller(_session_key(key), result[0], result[0].pk)
        return result


class _ImageSlide(NamedTuple):
    """What the image endpoints need of a slide the caller may read.

    A named tuple, and its file a string in the cache entry: the tile fast path unpickles the entry on
    every tile, and a frozen dataclass with a ``Path`` takes 18 µs to unpickle where these take 3.
    """

    pk: int
    sha256: str
    status: str
    failure_reason: str
    file_name: str
    size_bytes: int


def readable_slide(user_id: int, slide_id: int, *, cached_only: bool = False) -> tuple[_ImageSlide, str] | None:
    """The slide ``slide_id`` and its local file's path when user ``user_id`` may read its images.

    The one access rule of the image endpoints and the tile fast path: the caller is a member of
    the slide's project, the slide did not fail its check and its file is in storage. None: no
    such slide for this caller (a 404), or, with ``cached_only``, not known from the cache (then
    nothing is looked up: the request goes the full way). :class:`Unreadable` says why a slide
    the caller may see has no images.
    """
    # One entry per caller and slide: the slide, and its file under the MEDIA_ROOT it was found in.
    # "v2": the entry's shape (a shared Redis cache may still hold the older one for a few seconds).
    key = f"image-access:slide:v2:{user_id}:{slide_id}"
    hit = cast("tuple[_ImageSlide, str, str | None] | None", cache.get(key))
    if hit is not None and hit[1] == str(settings.MEDIA_ROOT):
        slide, _, path = hit
    elif cached_only:
        return None
    else:
        row = (
            Slide.objects.filter(pk=slide_id, cohort__project__memberships__user_id=user_id)
            .values_list("sha256", "status", "failure_reason", "file", "size_bytes")
            .first()
        )
        if row is None:
            return None
        slide = _ImageSlide(slide_id, *row)
        path = None
        if slide.status != Slide.Status.FAILED:
            try:
                path = str(services.local_path(
                    Slide(pk=slide.pk, sha256=slide.sha256, file=slide.file_name, size_bytes=slide.size_bytes)
                ))
            except FileNotFoundError:
                raise Unreadable("The slide file is missing from storage.") from None
        _remember(key, (slide, str(settings.MEDIA_ROOT), path))
    if slide.status == Slide.Status.FAILED or path is None:
        raise Unreadable(f"This slide failed its check: {slide.failure_reason}")
    return slide, path


class _ImageViewSchema(PortalAutoSchema):
    def get_auth(self) -> list[dict[str, list[str]]]:
        # The cached authenticators are DRF's session and token authentication with a short memory:
        # document them as those two schemes, not as two more of the same name.
        return [{"cookieAuth": []}, {"tokenAuth": []}]

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction == "response":
            responses.setdefault("304", {"description": "Not modified (If-None-Match had the ETag)"})
            responses.setdefault("409", self._error(ErrorSerializer, "The slide failed its check or its file is missing."))
        return responses


class _SlideImageView(APIView):
    """Base of the image endpoints: the caller's access and the file in one (cached) lookup, ETags."""

    permission_classes = [IsAuthenticated]
    authentication_classes = [_CachedSessionAuthentication, _CachedTokenAuthentication]
    schema = _ImageViewSchema()
    http_method_names = ["get", "head", "options"]

    def _answer(self, request: Request, pk: int, etag_parts: tuple[str, *tuple[object, ...]],
                body: Callable[[str], bytes], mime: str) -> HttpResponseBase:
        """``body(path)`` of the slide file as ``mime``, or 304 when the client's copy is current.

        ``etag_parts``: the kind of image and what picks it out (level, column, row...), for its ETag.
        """
        found = readable_slide(cast(Any, request.user).pk, pk)
        if found is None:
            raise NotFound("No such slide.")
        slide, path = found
        etag = _image_etag(slide, *etag_parts)
        response = not_modified(request, etag) or HttpResponse(body(path), content_type=mime)
        return _cached(response, etag)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, tiles.SlideReadError):
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        if isinstance(exc, tiles.TileOutOfRange):
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        return super().handle_exception(exc)


_R = TypeVar("_R", bound=HttpResponseBase)


def _image_etag(slide: _ImageSlide, kind: str, *parts: object) -> str:
    """The ETag of one image of a slide: it changes with the file (its SHA-256) and with TILES_VERSION."""
    return '"' + "-".join([kind, slide.sha256[:24], *map(str, parts), tiles.TILES_VERSION]) + '"'


def _cached(response: _R, etag: str) -> _R:
    response["ETag"] = etag
    response["Cache-Control"] = f"private, max-age={IMAGE_MAX_AGE}"
    return response


# One reader of integer query parameters for the whole API (pagination uses it too).


_FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}


class DeepZoomDescriptorView(_SlideImageView):
    """The DZI descriptor OpenSeadragon opens; its tiles are under ``dzi_files/``."""

    @extend_schema(responses={(200, "application/xml"): OpenApiTypes.STR})
    def get(self, request: Request, pk: int) -> HttpResponseBase:
        return self._answer(request, pk, ("dzi",), lambda path: tiles.deep_zoom(path).descriptor().encode(),
                            "application/xml")


class DeepZoomTileView(_SlideImageView):
    """One DZI tile (JPEG). Out-of-range levels or tiles are a 404."""

    @extend_schema(responses={(200, "image/jpeg"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int, level: int, col: int, row: int, fmt: str) -> HttpResponseBase:
        if fmt not in ("jpeg", "jpg"):
            raise NotFound("Tiles are served as .jpeg.")
        return self._answer(request, pk, ("t", level, col, row), lambda path: tiles.deep_zoom(path).tile(level, col, row),
                            "image/jpeg")


class ThumbnailView(_SlideImageView):
    @extend_schema(
        parameters=[OpenApiParameter("width", int), OpenApiParameter("height", int)],
        responses={(200, "image/jpeg"): OpenApiTypes.BINARY, (200, "image/png"): OpenApiTypes.BINARY},
    )
    def get(self, request: Request, pk: int, fmt: str) -> HttpResponseBase:
        """The whole slide scaled to fit width x height (default 256 x 256), aspect kept."""
        if fmt not in _FORMATS:
            raise NotFound("Thumbnails are .jpeg or .png.")
        width = query_int(request, "width", 256, low=2, high=tiles.MAX_OUTPUT_SIDE)
        height = query_int(request, "height", width, low=2, high=tiles.MAX_OUTPUT_SIDE)
        encoding, mime = _FORMATS[fmt]
        return self._answer(request, pk, ("th", f"{width}x{height}", fmt),
                            lambda path: tiles.thumbnail(path, width=width, height=height, fmt=encoding), mime)


class RegionView(_SlideImageView):
    @extend_schema(
        parameters=[
            OpenApiParameter("left", int, required=True), OpenApiParameter("top", int, required=True),
            OpenApiParameter("width", int, required=True), OpenApiParameter("height", int, required=True),
            OpenApiParameter("max_size", int, description="longest side of the answer (default 1024, at most 4096)"),
        ],
        responses={(200, "image/png"): OpenApiTypes.BINARY, (200, "image/jpeg"): OpenApiTypes.BINARY},
    )
    def get(self, request: Request, pk: int, fmt: str) -> HttpResponseBase:
        """A rectangle in level-0 pixels, scaled down to fit max_size when larger."""
        if fmt not in _FORMATS:
            raise NotFound("Regions are .png or .jpeg.")
        left, top = query_int(request, "left"), query_int(request, "top")
        width, height = query_int(request, "width", low=1), query_int(request, "height", low=1)
        max_size = query_int(request, "max_size", 1024, low=1, high=tiles.MAX_OUTPUT_SIDE)
        encoding, mime = _FORMATS[fmt]

        def body(path: str) -> bytes:
            try:
                return tiles.region(path, left=left, top=top, width=width, height=height, max_size=max_size,
                                    fmt=encoding)
            except tiles.TileOutOfRange as exc:
                # A region outside the slide is a bad request (a tile outside the pyramid is a 404).
                raise ValidationError({"detail": str(exc)}) from None

        return self._answer(request, pk, ("r", left, top, width, height, max_size, fmt), body, mime)


# --------------------------------------------------------------------------- the tile fast path

# The URL of DeepZoomTileView (api/ + slides/urls.py's "slide-tile", <int:> being [0-9]+), for .jpeg/.jpg only:
# other formats are the view's 404. tests/slides/test_tiles.py checks that the resolver agrees.
_TILE_PATH = re.compile(r"/api/slides/([0-9]+)/dzi_files/([0-9]+)/([0-9]+)_([0-9]+)\.(?:jpeg|jpg)")


def _cached_caller(request: HttpRequest) -> int | None:
    """The caller's id, when the image views' cache knows the credentials; None sends the request the full way.

    Same order as ``_SlideImageView.authentication_classes``: a session cookie wins over a token, so a
    cookie the cache does not know is never skipped in favour of the token behind it.
    """
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if session_key:
        return cache.get(_caller_id_key(_session_key(session_key)))
    header = request.META.get("HTTP_AUTHORIZATION")
    if not header:
        return None
    # Split as TokenAuthentication does (bytes, ASCII white space). Only keys that authenticated (an
    # active user's token) are ever cached, so any other header misses and gets DRF's own answer.
    parts = header.encode("iso-8859-1", errors="replace").split()
    if len(parts) != 2 or parts[0].lower() != b"token":
        return None
    try:
        key = parts[1].decode()
    except UnicodeError:
        return None
    return cache.get(_caller_id_key(_token_key(key)))


def _fast_tile(request: HttpRequest, match: re.Match[str]) -> HttpResponseBase | None:
    """A tile answered from the cache alone, or None for the full view (which also fills the cache).

    Access is decided by :func:`readable_slide`, the view's own function, from the cache only; anything
    it does not know (no or unknown credentials, no access, a failed slide, out of range, a read error)
    goes the full way and gets the view's own answer.
    """
    try:
        # CommonMiddleware is skipped: ALLOWED_HOSTS is checked here (a bad host gets its 400 the full way).
        request.get_host()
    except DisallowedHost:
        return None
    user_id = _cached_caller(request)
    if user_id is None:
        return None
    try:
        found = readable_slide(user_id, int(match[1]), cached_only=True)
    except Unreadable:
        return None
    if found is None:
        return None
    slide, path = found
    level, col, row = int(match[2]), int(match[3]), int(match[4])
    etag = _image_etag(slide, "t", level, col, row)
    response = not_modified(request, etag)
    if response is None:
        try:
            response = HttpResponse(tiles.deep_zoom(path).tile(level, col, row), content_type="image/jpeg")
        except (tiles.TileOutOfRange, tiles.SlideReadError):
            return None
    # CommonMiddleware's header (it is skipped): without it gunicorn falls back to chunked transfer encoding.
    response["Content-Length"] = str(len(cast(HttpResponse, response).content))
    # XFrameOptionsMiddleware's header, as that middleware is skipped too.
    response["X-Frame-Options"] = str(getattr(settings, "X_FRAME_OPTIONS", "DENY")).upper()
    return _cached(response, etag)


class TileFastPathMiddleware:
    """Serves a DeepZoom tile GET right after SecurityMiddleware, skipping the rest of the stack.

    A viewer asks for dozens of tiles a second, and for a cached (hot) tile Django's full stack (sessions,
    CSRF, messages, URL resolution, DRF's request, negotiation and authentication) cost several times what
    reading the tile costs. Only requests whose caller, access and file the image views' caches already
    know are answered here (see :func:`_fast_tile`); every other request, and every other URL, goes on
    down the stack unchanged. Access is still checked per project on every request, from the same
    short-lived cache the view uses.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.method == "GET":
            match = _TILE_PATH.fullmatch(request.path_info)
            if match is not None:
                response = _fast_tile(request, match)
                if response is not None:
                    return response
        return self.get_response(request)
