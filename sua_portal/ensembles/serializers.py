from __future__ import annotations

from typing import Any

from rest_framework import serializers

from sua_portal.ensembles.models import Ensemble, EnsembleMember, SlideHeatmap


class EnsembleMemberSerializer(serializers.ModelSerializer):
    epochs = serializers.SerializerMethodField()
    latest = serializers.SerializerMethodField()

    class Meta:
        model = EnsembleMember
        fields = ["index", "seed", "format", "status", "config", "epochs", "latest", "history"]
        read_only_fields = fields

    def get_epochs(self, obj: EnsembleMember) -> int:
        return len(obj.history or [])

    def get_latest(self, obj: EnsembleMember) -> dict[str, Any] | None:
        return obj.history[-1] if obj.history else None


class EnsembleSerializer(serializers.ModelSerializer):
    members = EnsembleMemberSerializer(many=True, read_only=True)

    class Meta:
        model = Ensemble
        fields = ["id", "project", "name", "origin", "status", "failure_reason", "network_config",
                  "training_config", "tile_size", "level_downsample", "created", "members"]
        read_only_fields = fields


class TrainSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    name = serializers.CharField(max_length=200)
    cohorts = serializers.ListField(child=serializers.IntegerField(), min_length=1)
    validation_cohorts = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
    config = serializers.DictField(required=False, default=dict)


class ImportSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    name = serializers.CharField(max_length=200)
    members = serializers.ListField(child=serializers.FileField(), min_length=1)
    tile_size = serializers.IntegerField(min_value=16, max_value=4096, default=256)
    level_downsample = serializers.FloatField(min_value=1.0, default=1.0)
    dry_run = serializers.BooleanField(
        default=False, help_text="only check: load each member and run it on one tile, store nothing (200)")


class MemberCheckSerializer(serializers.Serializer):
    file = serializers.CharField()
    format = serializers.CharField()
    config = serializers.DictField()
    parameters = serializers.IntegerField()
    size_bytes = serializers.IntegerField()


class DryRunSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    name = serializers.CharField()
    tile_size = serializers.IntegerField()
    level_downsample = serializers.FloatField()
    members = MemberCheckSerializer(many=True)


class RunSerializer(serializers.Serializer):
    slides = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
    cohorts = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)


class HeatmapSerializer(serializers.ModelSerializer):
    slide_name = serializers.CharField(source="slide.name", read_only=True)
    ensemble_name = serializers.CharField(source="ensemble.name", read_only=True)

    class Meta:
        model = SlideHeatmap
        fields = ["id", "ensemble", "ensemble_name", "slide", "slide_name", "status", "progress", "failure_reason", "downsample",
                  "worker", "started", "finished"]
        read_only_fields = fields
