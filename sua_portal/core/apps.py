from django.apps import AppConfig

from sua_portal.core import bodies


class CoreConfig(AppConfig):
    name = "sua_portal.core"
    label = "core"
    verbose_name = "Platform"

    def ready(self) -> None:
        # The development server's connections get the body deadline gunicorn's get from the middleware.
        bodies.arm_development_server()
