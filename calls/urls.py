from django.urls import path

from . import views

urlpatterns = [
    path("api/webhooks/call", views.call_webhook, name="call-webhook"),
    path("api/webhooks/<str:provider>", views.provider_webhook, name="provider-webhook"),
    path("api/queue/trigger", views.queue_trigger, name="queue-trigger"),
    path("api/queue/status", views.queue_status, name="queue-status"),
    path("api/admin/queues", views.admin_queues, name="admin-queues"),
    path("api/health", views.health, name="health"),
    path("api/policy", views.call_policy, name="call-policy"),
    path("metrics", views.metrics, name="metrics"),
    path("api/capacity", views.capacity, name="capacity"),
]
