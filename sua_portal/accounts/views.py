from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from sua_portal.accounts import roles, tokens
from sua_portal.accounts.models import ApiToken, Membership, Project
from sua_portal.accounts.permissions import IsAdminRoleOrReadOnly
from sua_portal.accounts.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
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

    def get_queryset(self) -> QuerySet[Project]:
        return Project.objects.visible_to(self.request.user).prefetch_related("memberships")

    def perform_create(self, serializer: Any) -> None:
        with transaction.atomic():
            project = serializer.save(created_by=self.request.user)
            Membership.objects.create(project=project, user=cast(User, self.request.user))

    @extend_schema(methods=["GET"], responses=MemberSerializer(many=True))
    @extend_schema(methods=["POST"], request=MemberSerializer, responses={201: MemberSerializer(many=True)})
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def members(self, request: Request, pk: str | None = None) -> Response:
        project = self.get_object()
        if request.method == "POST":
            serializer = MemberSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            user = serializer.validated_data["user"]["username"]
            try:
                with transaction.atomic():
                    Membership.objects.create(project=project, user=user)
            except IntegrityError:
                raise ValidationError({"username": [f"{user.username} is already a member."]}) from None
            return Response(
                MemberSerializer(project.memberships.select_related("user"), many=True).data,
                status=status.HTTP_201_CREATED,
            )
        return Response(MemberSerializer(project.memberships.select_related("user"), many=True).data)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<user_id>\d+)")
    def remove_member(self, request: Request, pk: str | None = None, user_id: str | None = None) -> Response:
        project = self.get_object()
        membership = get_object_or_404(Membership, project=project, user_id=user_id)
        membership.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


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
