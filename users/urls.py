from django.urls import path

from . import consent_views, views

urlpatterns = [
    # Before the user's own URL: "bulk" is not an external id (users/validators.py).
    path("api/users/bulk", views.users_bulk, name="users-bulk"),
    path("api/users/<str:external_id>", views.user_detail, name="user-detail"),
    path("api/users/<str:external_id>/call", views.user_call_now, name="user-call-now"),
    path("api/users/<str:external_id>/calls", views.user_calls, name="user-calls"),
    path("api/users/<str:external_id>/opt-out", views.user_opt_out, name="user-opt-out"),
    path("api/users/<str:external_id>/skip", views.user_skip, name="user-skip"),
    path("api/users/<str:external_id>/consent", consent_views.user_consent, name="user-consent"),
    path("api/suppressions/<str:number>", consent_views.suppression_detail, name="suppression-detail"),
]
