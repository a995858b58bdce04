from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "sua_portal.review"
    label = "review"
    verbose_name = "Review: pathologists' verdicts on flagged regions"
