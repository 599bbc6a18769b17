from django.urls import path

from . import views

urlpatterns = [
    path("api/webhooks/twilio/sms", views.twilio_sms_webhook, name="twilio-sms-webhook"),
]
