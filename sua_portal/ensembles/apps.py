from django.apps import AppConfig


class EnsemblesConfig(AppConfig):
    name = "sua_portal.ensembles"
    label = "ensembles"
    verbose_name = "Deep ensembles and heatmaps"
