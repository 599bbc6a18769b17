from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "relevel"
admin.site.site_title = "relevel admin"
admin.site.index_title = "Daily calls"

urlpatterns = [
    path("admin/", admin.site.urls),
    # django-rq's views check staff themselves; the dashboard lives where operators expect it.
    path("django-rq/", include("django_rq.urls")),
    path("", include("calls.urls")),
]
