"""The URLconf of the webhooks' lean stack (relevel/handlers.py): the routes under
/api/webhooks/ that relevel/urls.py includes, in the same order, and nothing else."""

from django.urls import path

from calls import views as calls_views
from notifications import views as notifications_views

urlpatterns = [
    path("api/webhooks/twilio/sms", notifications_views.twilio_sms_webhook, name="twilio-sms-webhook"),
    path("api/webhooks/call", calls_views.call_webhook, name="call-webhook"),
    path("api/webhooks/<str:provider>", calls_views.provider_webhook, name="provider-webhook"),
]
