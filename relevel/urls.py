import django_rq.urls
from django.contrib import admin
from django.urls import include, path

from .queue_dashboard import gated

admin.site.site_header = "relevel"
admin.site.site_title = "relevel admin"
admin.site.index_title = "Daily calls"

urlpatterns = [
    path("admin/", admin.site.urls),
    # django-rq's views check staff themselves; acting (POST) also needs calls.manage_queues.
    # The dashboard lives where operators expect it.
    path("django-rq/", include((gated(django_rq.urls.urlpatterns), django_rq.urls.app_name))),
    path("", include("calls.urls")),
    path("", include("users.urls")),
]
