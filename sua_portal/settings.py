"""Django settings for SUA Portal, read from the environment (see README.md)."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
import django_stubs_ext

from analysis import defaults as paper
from sua_portal.env import envbool, envfloat, envint, envlist, envstr

# Lets the Django generics used in type hints (admin.ModelAdmin[Model]) work at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DEBUG", False)
SECRET_KEY = envstr("SECRET_KEY") or ("insecure-dev-key-only-for-debug" if DEBUG else "")
if not SECRET_KEY:
    # Fail loudly instead of running production with a guessable key.
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SECRET_KEY is not set (or set DEBUG=true for development)")

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI and ReDoc as static files of our own: /api/docs/ and /api/redoc/ work without internet.
    "drf_spectacular_sidecar",
    "sua_portal.core",
    "sua_portal.accounts",
    "sua_portal.slides",
    "sua_portal.ensembles",
    "sua_portal.runs",
    "sua_portal.review",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Answers DeepZoom tile GETs whose caller and access are cached, skipping the rest (see its docstring).
    "sua_portal.slides.views.TileFastPathMiddleware",
    # Before anything reads a body: too large for its view is a 413 from Content-Length, a stalled one a 408.
    "sua_portal.core.bodies.RequestBodyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "sua_portal.urls"
WSGI_APPLICATION = "sua_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "sua_portal" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "sua_portal.core.context.portal",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sua_portal") or "",
        conn_max_age=envint("DB_CONN_MAX_AGE", 60),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if envbool("FAST_PASSWORD_HASHER", False):
    # Tests create many users; the default PBKDF2 rounds would dominate their time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "var" / "static")) or "")
STATICFILES_DIRS = [
    ("app", BASE_DIR / "frontend" / "src"),
    ("openseadragon", BASE_DIR / "frontend" / "node_modules" / "openseadragon" / "build" / "openseadragon"),
    # The run page's charts: vega-embed and the two libraries it drives, as their UMD builds (globals).
    ("vega", BASE_DIR / "frontend" / "node_modules" / "vega" / "build"),
    ("vega-lite", BASE_DIR / "frontend" / "node_modules" / "vega-lite" / "build"),
    ("vega-embed", BASE_DIR / "frontend" / "node_modules" / "vega-embed" / "build"),
]
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(BASE_DIR / "var" / "media")) or "")
MEDIA_URL = "/media/"

# Object storage: set STORAGE_BACKEND=s3 and the AWS_* variables for S3-compatible storage.
STORAGE_BACKEND = envstr("STORAGE_BACKEND", "local")
STORAGES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if STORAGE_BACKEND == "s3":
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": envstr("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": envstr("AWS_S3_ENDPOINT_URL"),
            "region_name": envstr("AWS_S3_REGION_NAME"),
            "access_key": envstr("AWS_ACCESS_KEY_ID"),
            "secret_key": envstr("AWS_SECRET_ACCESS_KEY"),
        },
    }
# Workers and web servers read slides from a copy on their own disk when storage is remote: a cache
# of at most SLIDE_CACHE_MAX_BYTES per machine, least recently used slides out (slides in use stay).
SLIDE_CACHE_DIR = Path(envstr("SLIDE_CACHE_DIR", str(BASE_DIR / "var" / "slide-cache")) or "")
SLIDE_CACHE_MAX_BYTES = envint("SLIDE_CACHE_MAX_BYTES", 50 * 1024**3)

# Django's cache: local memory per process unless CACHE_URL names a Redis server (redis://host:6379/2),
# which the processes of one deployment then share.
CACHE_URL = envstr("CACHE_URL")
CACHES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "sua-portal",
          # Callers, slides and files of the image endpoints: one entry each per user and slide.
          "OPTIONS": {"MAX_ENTRIES": 20_000}},
}
# How long the image endpoints remember who a caller is and which slides and files they may read:
# a removed membership or a signed-out session still reaches tiles for at most this long. 0: never.
SLIDE_IMAGE_ACCESS_CACHE_SECONDS = envfloat("SLIDE_IMAGE_ACCESS_CACHE_SECONDS", 10.0)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "sua_portal.accounts.authentication.PersonalTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "sua_portal.core.schema.PortalAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "sua_portal.core.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": envint("API_PAGE_SIZE", 100),
    # Services raise domain errors (sua_portal.errors); this one handler turns them into answers.
    "EXCEPTION_HANDLER": "sua_portal.http.exception_handler",
}
# Personal API tokens: valid this many days unless asked otherwise, and at most API_TOKEN_MAX_DAYS.
API_TOKEN_DAYS = envint("API_TOKEN_DAYS", 90)
API_TOKEN_MAX_DAYS = envint("API_TOKEN_MAX_DAYS", 365)
# The largest ?limit= a list answers; more is a 400 naming the bound.
API_MAX_PAGE_SIZE = envint("API_MAX_PAGE_SIZE", 1000)
SPECTACULAR_SETTINGS = {
    "TITLE": "SUA Portal API",
    "DESCRIPTION": "Uncertainty-guided review of tumor segmentation in whole-slide images.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # The documentation pages load their scripts from drf-spectacular-sidecar's static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request and response bodies as separate components, so a response lists every field it always has.
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a "status"; name each choice set after its model in the schema.
    "ENUM_NAME_OVERRIDES": {
        "SlideStatusEnum": "sua_portal.slides.models.Slide.Status",
        "EnsembleStatusEnum": "sua_portal.ensembles.models.Ensemble.Status",
        "HeatmapStatusEnum": "sua_portal.ensembles.models.SlideHeatmap.Status",
        "RunStatusEnum": "sua_portal.runs.models.Run.Status",
        "PortalRoleEnum": "sua_portal.accounts.roles.ROLES",
        "RunCohortRoleEnum": "sua_portal.runs.models.RunCohort.Role",
    },
}

# Celery: JSON only, a task is acknowledged after it ran so a killed worker's
# task goes to another worker, with time limits so nothing hangs forever.
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = envstr("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 3 * 3600)
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 3 * 3600 + 300)
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_QUEUES_NAMES = ("gpu", "cpu")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
#: What celery beat runs (docker/compose.yaml's beat service; `make demo`'s worker embeds it): resumable
#: uploads and cohort imports abandoned for two days are forgotten, their partial files removed.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "purge-stale-uploads": {"task": "slides.purge_stale_uploads", "schedule": envint("PURGE_EVERY_S", 6 * 3600),
                            "options": {"queue": "cpu"}},
}
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 4 * 3600)}

# The paper's parameters: defaults of settings, overridable per deployment.
SUA_RANGES = paper.PAPER_RANGES
SUA_AGGREGATE: str = envstr("SUA_AGGREGATE") or paper.AGGREGATE
SUA_UNCERTAINTY: str = envstr("SUA_UNCERTAINTY") or paper.UNCERTAINTY
SUA_FN_FRACTION = envfloat("SUA_FN_FRACTION", paper.FN_FRACTION)
SUA_BETA = envfloat("SUA_BETA", paper.BETA)
SUA_BOOTSTRAP = envint("SUA_BOOTSTRAP", paper.BOOTSTRAP)

# Runs: the bootstrap's seed, its largest B (a run holds B x slides multiplicities per domain),
# the candidates of aggregation "auto", which range pathologists review (0-based: the paper's
# widest, 0.55-0.95) and how often a run waiting for heatmaps looks again.
RUN_SEED = envint("RUN_SEED", paper.SEED)
RUN_MAX_BOOTSTRAP = envint("RUN_MAX_BOOTSTRAP", 10_000)
RUN_AUTO_AGGREGATES: tuple[str, ...] = paper.AUTO_AGGREGATES
RUN_REVIEW_RANGE = envint("RUN_REVIEW_RANGE", 0)
RUN_POLL_SECONDS = envfloat("RUN_POLL_SECONDS", 3.0)
RUN_SCORE_BINS = envint("RUN_SCORE_BINS", 50)  # NPR-score histograms of the run page
RUN_MASK_RGBA = (0, 200, 255, 255)  # a refined mask in the viewer: cyan, apart from the magma heatmaps

# Review: the colour of each verdict (and of a region without one, or with reviewers disagreeing) in
# the exports (QuPath's classification colour, ASAP's group colour); the reviewed segmentation in the
# viewer; each queued region's small image (longest side, and the context around the region as a
# fraction of its size); the longest comment.
REVIEW_VERDICT_COLORS: dict[str, tuple[int, int, int]] = {
    "tumor": (200, 0, 0), "not_tumor": (0, 160, 0), "unsure": (255, 170, 0),
    "disputed": (160, 0, 200), "unreviewed": (128, 128, 128),
}
REVIEW_MASK_RGBA = (255, 64, 160, 255)  # magenta, apart from the refined masks' cyan
REVIEW_IMAGE_SIZE = envint("REVIEW_IMAGE_SIZE", 128)
REVIEW_IMAGE_MARGIN = envfloat("REVIEW_IMAGE_MARGIN", 0.25)
REVIEW_COMMENT_MAX = 2000

# Whole-slide inference: heatmap pixel = HEATMAP_DOWNSAMPLE level-0 pixels; tiles overlap by
# INFERENCE_OVERLAP pixels (cropped away when stitching) and go through the members in batches.
HEATMAP_DOWNSAMPLE = envfloat("HEATMAP_DOWNSAMPLE", 16.0)
INFERENCE_OVERLAP = envint("INFERENCE_OVERLAP", 32)
INFERENCE_BATCH = envint("INFERENCE_BATCH", 16)
# Tile edge (pixels at the ensemble's level) that trained ensembles run on. Training patches are
# small (32 px in the demo) but inference tiles must be much larger than 2 * INFERENCE_OVERLAP, or
# most of every tile is cropped away again.
INFERENCE_TILE = envint("INFERENCE_TILE", 256)
# torch.compile the members of an inference run: 1.76x the members' tiles/s (5 paper members on an H200),
# after about a minute compiling in each worker process; GPU workers only (ignored on the CPU, whose image
# has no C compiler for TorchInductor; Triton on the GPU needs one too: docker/Dockerfile.gpu has it).
INFERENCE_COMPILE = envbool("INFERENCE_COMPILE", False)
# Threads torch may use in one worker process; a prefork pool has one process per core already.
TORCH_THREADS = envint("TORCH_THREADS", 1)
# The training preset (analysis.training.TRAINING_PRESETS) whose values the admin's training form starts
# from: "paper" is the paper's recipe (SPEC §8); "demo" trains on a CPU in minutes.
TRAINING_FORM_PRESET = envstr("TRAINING_FORM_PRESET", "paper")

# Uploads stream to disk past this size; slides larger than the limit are refused.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024
SLIDE_MAX_UPLOAD_BYTES = envint("SLIDE_MAX_UPLOAD_BYTES", 20 * 1024**3)
# A cohort import from the browser (docs/cohort-import.md): files in one import (a zip's entries count),
# and the largest preview or start request (the file list and the manifest, as JSON).
IMPORT_MAX_FILES = envint("IMPORT_MAX_FILES", 20000)
IMPORT_MAX_REQUEST_BYTES = envint("IMPORT_MAX_REQUEST_BYTES", 32 * 1024 * 1024)
# The members of an ensemble imported in one request, all together.
ENSEMBLE_MAX_UPLOAD_BYTES = envint("ENSEMBLE_MAX_UPLOAD_BYTES", 4 * 1024**3)
# Seconds a request may go without sending the next byte of its body before it is answered 408
# (sua_portal.core.bodies: under gunicorn and the development server alike).
REQUEST_BODY_TIMEOUT = envfloat("REQUEST_BODY_TIMEOUT", 60.0)
# The resolutions (level-0 µm per pixel) an admin may set for slides whose files have none: from a
# low-power overview (100) to beyond any optical scanner (0.05; 40x is about 0.25).
SLIDE_MPP_MIN = envfloat("SLIDE_MPP_MIN", 0.05)
SLIDE_MPP_MAX = envfloat("SLIDE_MPP_MAX", 100.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"large_image": {"level": "WARNING"}},
}
