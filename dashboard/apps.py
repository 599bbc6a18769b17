from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The operators' dashboard: read-only pages over the calls, from dashboard.selectors."""

    name = "dashboard"
    default_auto_field = "django.db.models.BigAutoField"
