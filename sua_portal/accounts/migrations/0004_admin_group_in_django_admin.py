"""The admin role in the Django admin: its users become staff, the group gets the portal's model permissions.

Permissions of models a fresh database has just created do not exist yet while migrating: Django makes
them after ``migrate`` (post_migrate), and ``roles.grant_after_migrate`` grants them then.
"""

from django.db import migrations

from sua_portal.accounts import roles


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    Group, Permission, User = apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"), apps.get_model("auth", "User")
    roles.grant_admin_permissions(Group, Permission)
    User.objects.filter(groups__name=roles.ADMIN, is_staff=False).update(is_staff=True)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_api_tokens"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
