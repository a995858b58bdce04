from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework import serializers

from sua_portal.accounts import roles
from sua_portal.accounts.models import ApiToken, Membership, Project

User = get_user_model()
#: The roles a member may be given (a name of its own: MemberSerializer has a field called ``roles``).
ROLE_CHOICES = roles.ROLES


class ProjectSerializer(serializers.ModelSerializer):
    member_count = serializers.IntegerField(source="memberships.count", read_only=True)

    class Meta:
        model = Project
        fields = ["id", "name", "description", "blind_review", "created", "member_count"]
        read_only_fields = ["id", "created", "member_count"]


class MemberSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.id", read_only=True)
    username = serializers.CharField(source="user.username")
    roles = serializers.SerializerMethodField()
    role = serializers.ChoiceField(
        choices=ROLE_CHOICES, required=False, write_only=True,
        help_text="also give the person this portal-wide role (their other roles go)",
    )

    class Meta:
        model = Membership
        fields = ["user_id", "username", "roles", "role", "added"]
        read_only_fields = ["user_id", "roles", "added"]

    def get_roles(self, obj: Membership) -> list[str]:
        return sorted(roles.roles_of(obj.user))

    def validate_username(self, value: str) -> Any:
        try:
            return User.objects.get(username=value)
        except User.DoesNotExist:
            raise serializers.ValidationError(f"There is no user called {value!r}.") from None


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLE_CHOICES, help_text="the person's one portal-wide role")


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())


class ApiTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created", "expires", "last_used"]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="what the token is for")
    days = serializers.IntegerField(
        required=False, min_value=1, max_value=settings.API_TOKEN_MAX_DAYS,
        help_text="days until it expires (default API_TOKEN_DAYS, at most API_TOKEN_MAX_DAYS)",
    )


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="send as 'Authorization: Token <key>'; shown only now")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "key"]
        read_only_fields = fields
