from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "sua_portal.core"
    label = "core"
    verbose_name = "Platform"
