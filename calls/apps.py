from django.apps import AppConfig


class CallsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "calls"

    def ready(self) -> None:
        # Registers the deploy checks (`manage.py check --deploy`).
        from relevel import checks  # noqa: F401
