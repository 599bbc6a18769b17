"""django-rq's entry in the admin (/admin/django_rq/dashboard/), re-registered so that its
views need the same permission to act as the /django-rq/ dashboard (relevel/queue_dashboard.py)."""

from django.contrib import admin
from django_rq import admin as django_rq_admin  # registers its Dashboard (RQ_SHOW_ADMIN_LINK)
from django_rq.models import Dashboard

from .queue_dashboard import gated


class QueueDashboardAdmin(django_rq_admin.QueueAdmin):
    def get_urls(self):
        return gated(super().get_urls())


if admin.site.is_registered(Dashboard):
    admin.site.unregister(Dashboard)
    admin.site.register(Dashboard, QueueDashboardAdmin)
