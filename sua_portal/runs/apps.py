from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "sua_portal.runs"
    label = "runs"
    verbose_name = "Runs: calibrated experiments and their flags"
