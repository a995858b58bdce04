from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from sua_portal.accounts import roles, services, tokens
from sua_portal.accounts.models import ApiToken, Membership, Project
from sua_portal.accounts.permissions import IsAdminRoleOrReadOnly
from sua_portal.accounts.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    MemberRoleSerializer,
    MemberSerializer,
    MeSerializer,
    ProjectSerializer,
)


@extend_schema(responses=MeSerializer)
@api_view(["GET"])
def me(request: Request) -> Response:
    """Who is signed in, and with which roles."""
    user = request.user
    return Response({"id": user.pk, "username": user.get_username(), "roles": sorted(roles.roles_of(user))})


class ProjectViewSet(viewsets.ModelViewSet):
    """Projects the caller is a member of. Admins create, rename, delete and manage members."""

    serializer_class = ProjectSerializer
    permission_classes = [IsAuthenticated, IsAdminRoleOrReadOnly]
    # No filters: any query parameter but limit and offset is a 400 naming it (the paginator checks).
    list_filters = {"list": ()}
    # A member added twice is the username's error, as the serializer reports an unknown one.
    domain_error_fields = {"members": "username"}

    def get_queryset(self) -> QuerySet[Project]:
        return Project.objects.visible_to(self.request.user).prefetch_related("memberships")

    def perform_create(self, serializer: Any) -> None:
        with transaction.atomic():
            project = serializer.save(created_by=self.request.user)
            Membership.objects.create(project=project, user=cast(User, self.request.user))

    def _members(self, project: Project) -> Any:
        return MemberSerializer(project.memberships.select_related("user").prefetch_related("user__groups")
                                .order_by("user__username"), many=True).data

    @extend_schema(methods=["GET"], responses=MemberSerializer(many=True))
    @extend_schema(methods=["POST"], request=MemberSerializer, responses={
        201: MemberSerializer(many=True), 403: OpenApiResponse(description="one's own role")})
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def members(self, request: Request, pk: str | None = None) -> Response:
        """The project's members with their roles; POST adds one by username (with ``role``, sets their role)."""
        project = self.get_object()
        if request.method == "POST":
            serializer = MemberSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            user = serializer.validated_data["user"]["username"]
            services.add_member(project, user, role=serializer.validated_data.get("role"), by=request.user)
            return Response(self._members(project), status=status.HTTP_201_CREATED)
        return Response(self._members(project))

    @extend_schema(methods=["PATCH"], request=MemberRoleSerializer, responses={
        200: MemberSerializer(many=True), 403: OpenApiResponse(description="one's own role")})
    @extend_schema(methods=["DELETE"], request=None, responses={
        204: None, 409: OpenApiResponse(description="the project's last admin")})
    @action(detail=True, methods=["patch", "delete"], url_path=r"members/(?P<user_id>\d+)")
    def member(self, request: Request, pk: str | None = None, user_id: str | None = None) -> Response:
        """PATCH gives a member another portal-wide role; DELETE takes them out of the project."""
        project = self.get_object()
        membership = get_object_or_404(Membership.objects.select_related("user"), project=project, user_id=user_id)
        if request.method == "DELETE":
            services.remove_member(project, membership.user, by=request.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        body = MemberRoleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.set_role(membership.user, body.validated_data["role"], by=request.user)
        return Response(self._members(project))


class ApiTokenViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The caller's own personal API tokens: list, make (the key is in the answer, once) and revoke (DELETE)."""

    serializer_class = ApiTokenSerializer
    permission_classes = [IsAuthenticated]
    list_filters = {"list": ()}

    def get_queryset(self) -> QuerySet[ApiToken]:
        return ApiToken.objects.filter(user_id=cast(int, self.request.user.pk))

    @extend_schema(request=ApiTokenCreateSerializer, responses={201: ApiTokenCreatedSerializer})
    def create(self, request: Request) -> Response:
        body = ApiTokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            token, key = tokens.issue(request.user, name=body.validated_data["name"],
                                      days=body.validated_data.get("days"))
        except tokens.TokenError as exc:
            raise ValidationError({"name": [str(exc)]}) from None
        token.key = key  # type: ignore[attr-defined]
        return Response(ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)
