from django.urls import path

from . import views

urlpatterns = [
    path("api/webhooks/call", views.call_webhook, name="call-webhook"),
]
