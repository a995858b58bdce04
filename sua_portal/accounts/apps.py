from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_migrate

from sua_portal.accounts import roles


class AccountsConfig(AppConfig):
    name = "sua_portal.accounts"
    label = "accounts"
    verbose_name = "Projects and people"

    def ready(self) -> None:
        # Users of the admin group are staff, and the group holds the portal's model permissions (/admin/).
        # m2m_changed of every relation reaches the handler, which keeps to User.groups.
        m2m_changed.connect(roles.staff_follows_admin_group, dispatch_uid="staff-follows-admin-group")
        post_migrate.connect(roles.grant_after_migrate, dispatch_uid="grant-admin-permissions")
