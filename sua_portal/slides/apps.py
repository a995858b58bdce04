from django.apps import AppConfig


class SlidesConfig(AppConfig):
    name = "sua_portal.slides"
    label = "slides"
    verbose_name = "Slides and cohorts"
