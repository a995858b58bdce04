from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from sua_portal.accounts import pages as account_pages
from sua_portal.accounts.views import ApiTokenViewSet, ProjectViewSet, me
from sua_portal.core import pages
from sua_portal.core.views import RedocView, SwaggerView, healthz, not_found
from sua_portal.ensembles import urls as ensemble_urls
from sua_portal.review import start
from sua_portal.review import urls as review_urls
from sua_portal.runs import urls as run_urls
from sua_portal.slides import urls as slide_urls

# An API URL with a malformed id (``/api/slides/0.5/``) matches no route: answer it in JSON too.
handler404 = not_found

router = DefaultRouter()
router.register("projects", ProjectViewSet, basename="project")
router.register("tokens", ApiTokenViewSet, basename="token")

urlpatterns = [
    path("", start.home, name="home"),
    path("projects/", pages.projects, name="projects"),
    path("review/", start.worklist, name="worklist"),
    path("demo-build/", pages.demo_build_panel, name="demo-build"),
    path("healthz", healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/tokens/", account_pages.api_tokens, name="api-tokens"),
    path("admin/", admin.site.urls),
    path("api/me/", me, name="me"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", RedocView.as_view(url_name="schema"), name="redoc"),
    path("api/", include(router.urls)),
    path("api/", include(slide_urls.api_urlpatterns)),
    path("api/", include(ensemble_urls.api_urlpatterns)),
    path("api/", include(run_urls.api_urlpatterns)),
    path("api/", include(review_urls.api_urlpatterns)),
    path("", include(slide_urls.page_urlpatterns)),
    path("", include(run_urls.page_urlpatterns)),
    path("", include(ensemble_urls.page_urlpatterns)),
]
