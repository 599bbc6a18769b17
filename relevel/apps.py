from django.apps import AppConfig


class RelevelConfig(AppConfig):
    name = "relevel"
    verbose_name = "relevel"
