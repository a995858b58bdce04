from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from sua_portal.accounts import roles
from sua_portal.accounts.models import Membership, Project

User = get_user_model()


class ProjectSerializer(serializers.ModelSerializer):
    member_count = serializers.IntegerField(source="memberships.count", read_only=True)

    class Meta:
        model = Project
        fields = ["id", "name", "description", "created", "member_count"]
        read_only_fields = ["id", "created", "member_count"]


class MemberSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.id", read_only=True)
    username = serializers.CharField(source="user.username")
    roles = serializers.SerializerMethodField()

    class Meta:
        model = Membership
        fields = ["user_id", "username", "roles", "added"]
        read_only_fields = ["user_id", "roles", "added"]

    def get_roles(self, obj: Membership) -> list[str]:
        return sorted(roles.roles_of(obj.user))

    def validate_username(self, value: str) -> Any:
        try:
            return User.objects.get(username=value)
        except User.DoesNotExist:
            raise serializers.ValidationError(f"There is no user called {value!r}.") from None


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())
