from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "sua_portal.runs"
    label = "runs"
    verbose_name = "Runs: calibrated experiments and their flags"

    def ready(self) -> None:
        # A slide checked later joins the review run of its cohort (signals: slides cannot import runs).
        from sua_portal.runs import signals  # noqa: F401
