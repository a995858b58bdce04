from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "sua_portal.accounts"
    label = "accounts"
    verbose_name = "Projects and people"
