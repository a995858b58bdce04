from django.contrib import admin

from sua_portal.core.models import WorkerPing

admin.site.register(WorkerPing)
