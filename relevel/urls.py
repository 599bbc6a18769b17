import django_rq.urls
from django.contrib import admin
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path, reverse_lazy
from django.views.generic import RedirectView

from .queue_dashboard import gated
from .views import api_schema

admin.site.site_header = "relevel"
admin.site.site_title = "relevel admin"
admin.site.index_title = "Daily calls"
# The admin's "View site" link leads to the operators' dashboard.
admin.site.site_url = reverse_lazy("dashboard:index")


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    # Browsers ask for /favicon.ico on pages that name no icon (JSON, django-rq's): a 404
    # logged as a warning every time, otherwise.
    return HttpResponsePermanentRedirect(static("relevel/favicon.svg"))


urlpatterns = [
    path("favicon.ico", favicon),
    path("", RedirectView.as_view(pattern_name="dashboard:index"), name="home"),
    path("admin/", admin.site.urls),
    path("dashboard/", include("dashboard.urls")),
    path("api/schema", api_schema, name="api-schema"),
    # django-rq's views check staff themselves; acting (POST) also needs calls.manage_queues.
    # The dashboard lives where operators expect it.
    path("django-rq/", include((gated(django_rq.urls.urlpatterns), django_rq.urls.app_name))),
    path("", include("notifications.urls")),
    path("", include("calls.urls")),
    path("", include("users.urls")),
]
