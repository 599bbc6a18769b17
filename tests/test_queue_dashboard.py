"""The queues dashboard: staff may look; emptying queues and deleting, requeueing or stopping
jobs needs calls.manage_queues (superusers have it), wherever the dashboard is mounted.

Suspected and confirmed: django-rq 4.2's views check only staff_member_required, so before
this gate any staff account with no permission at all could do all of it.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from rq.job import Job

from calls import queues

pytestmark = pytest.mark.django_db

MOUNTS = ["/django-rq/", "/admin/django_rq/dashboard/"]


def succeed() -> str:
    return "ok"


@pytest.fixture
def queued_job(redis_conn):
    return queues.calls_queue().enqueue(succeed)


@pytest.fixture
def staff(client, make_user):
    """A staff account with no permission at all."""
    client.force_login(make_user(is_staff=True))
    return client


def grant_manage_queues(user) -> None:
    user.user_permissions.add(
        Permission.objects.get(codename="manage_queues", content_type__app_label="calls")
    )


def queue_index() -> int:
    from django.conf import settings

    return list(settings.RQ_QUEUES).index(settings.CALLS_QUEUE)


def actions(mount: str, job_id: str) -> list[tuple[str, dict]]:
    """Every acting request of the dashboard, on one queue and one job."""
    q = f"{mount}queues/{queue_index()}/"
    return [
        (f"{q}empty/", {}),
        (f"{q}{job_id}/delete/", {"post": "yes"}),
        (f"{q}{job_id}/requeue/", {"requeue": "Requeue"}),
        (f"{q}{job_id}/enqueue/", {}),
        (f"{q}{job_id}/stop/", {}),
        (f"{q}requeue-all/", {}),
        (f"{q}failed/clear/", {}),
        (f"{mount}queues/actions/{queue_index()}/", {"action": "delete", "job_ids": [job_id]}),
        (
            f"{mount}queues/confirm-action/{queue_index()}/",
            {"action": "delete", "_selected_action": [job_id]},
        ),
    ]


@pytest.mark.parametrize("mount", MOUNTS)
def test_staff_without_the_permission_may_look_but_not_act(staff, queued_job, mount):
    assert staff.get(mount).status_code == 200
    assert staff.get(f"{mount}queues/{queue_index()}/").status_code == 200
    assert staff.get(f"{mount}queues/{queue_index()}/empty/").status_code == 200  # the confirmation page
    for url, data in actions(mount, queued_job.id):
        assert staff.post(url, data).status_code == 403, url
    assert Job.exists(queued_job.id, connection=queued_job.connection)
    assert queued_job.id in queues.calls_queue().job_ids


@pytest.mark.parametrize("mount", MOUNTS)
def test_staff_with_the_permission_empty_a_queue(staff, queued_job, mount):
    from django.contrib.auth import get_user

    grant_manage_queues(get_user(staff))
    response = staff.post(f"{mount}queues/{queue_index()}/empty/")
    assert response.status_code == 302
    assert queues.calls_queue().job_ids == []


@pytest.mark.parametrize("mount", MOUNTS)
def test_a_superuser_deletes_a_job(admin_client, queued_job, mount):
    response = admin_client.post(f"{mount}queues/{queue_index()}/{queued_job.id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Job.exists(queued_job.id, connection=queued_job.connection)


def test_anonymous_actions_are_sent_to_the_login_page(client, queued_job):
    response = client.post(f"/django-rq/queues/{queue_index()}/empty/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert queued_job.id in queues.calls_queue().job_ids


def test_every_dashboard_view_is_gated():
    # A view django-rq adds later is gated too: each URL under both mounts goes through it.
    from django.urls import get_resolver

    from relevel.queue_dashboard import queue_actions_need_permission

    resolver = get_resolver()
    gated_code = queue_actions_need_permission(lambda request: None).__code__
    mounted = [p for p in resolver.url_patterns if str(p.pattern) == "django-rq/"]
    [dashboard] = mounted
    for pattern in dashboard.url_patterns:
        assert pattern.callback.__code__ is gated_code, pattern.name
