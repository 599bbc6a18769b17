"""The queues dashboard (django-rq's views) with acting gated on a permission.

django-rq 4.2 checks only ``staff_member_required`` in every view, so any staff account,
with no permission at all, could empty a queue or delete, requeue and stop jobs. Looking
stays open to staff; every action (django-rq acts only on POST: GET shows its confirmation
pages) needs ``calls.manage_queues``, which superusers have. It is applied to both places
the views are mounted: /django-rq/ (relevel/urls.py) and django-rq's entry in the admin
(/admin/django_rq/dashboard/, relevel/admin.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver

MANAGE_QUEUES_PERMISSION = "calls.manage_queues"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def queue_actions_need_permission(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if (
            request.method not in SAFE_METHODS
            and user.is_authenticated  # anonymous: django-rq sends them to the login page
            and not user.has_perm(MANAGE_QUEUES_PERMISSION)
        ):
            raise PermissionDenied(f"Acting on queues needs the {MANAGE_QUEUES_PERMISSION} permission.")
        return view(request, *args, **kwargs)

    return wrapper


def gated(patterns: list) -> list:
    """``patterns`` with every view wrapped in queue_actions_need_permission."""
    result = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):  # none today; one later must not slip through
            raise TypeError(f"cannot gate the included URLs {pattern!r}")
        result.append(
            URLPattern(
                pattern.pattern,
                queue_actions_need_permission(pattern.callback),
                pattern.default_args,
                pattern.name,
            )
        )
    return result
