"""Messages from the operators' templates (MessageTemplate), in Django's template language.

The context is built in one place, message_context, so that what a template may use is
listed once (docs/notifications.md) and a new variable is added here for every channel. It
carries fields of the user, never the user object: a template must not be able to reach a
password hash or another person through it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.template import Context, Engine, TemplateSyntaxError

from .models import Channel, Kind, MessageTemplate

# Plain text, not HTML: a name such as "Ana & Raj" is sent as typed.
_ENGINE = Engine(autoescape=False)

# Used when an operator deleted a template: the same text as the data migration's.
DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    Channel.SMS: {
        "subject": "",
        "body": (
            'Hi {{ first_name }}, we tried to call you on {{ local_date|date:"l j F" }} and could not '
            "reach you. We will call again at your usual time. Reply STOP to stop these texts, "
            "or STOP CALLS to stop the calls too."
        ),
    },
    Channel.EMAIL: {
        "subject": 'We missed you on {{ local_date|date:"l j F" }}',
        "body": (
            "Hi {{ first_name }},\n\n"
            'We tried to call you on {{ local_date|date:"l j F" }} and could not reach you. '
            "We will call again at your usual time.\n\n"
            "If you would rather not get these e-mails, tell us and we will stop them.\n"
        ),
    },
}


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    body: str


class TemplateInvalid(ValueError):
    """A template that does not compile or render; the message says where."""


def message_context(*, user: Any, local_date: date, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What every template can use. ``context`` is the user's own context variables (a
    ``context`` JSON on the user, when there is one), ``extra`` the caller's."""
    name = (getattr(user, "name", "") or "").strip()
    first_name = (getattr(user, "first_name", "") or "").strip() or (name.split()[0] if name else "there")
    own_context = getattr(user, "context", None)
    return {
        "name": name or first_name,
        "first_name": first_name,
        "local_date": local_date,
        "time_zone": getattr(user, "local_tz", ""),
        "external_id": getattr(user, "external_id", None) or "",
        "context": dict(own_context) if isinstance(own_context, Mapping) else {},
        **(extra or {}),
    }


def template_for(*, kind: str = Kind.DAY_MISSED, channel: str) -> tuple[str, str]:
    """(subject, body) of the operators' template, or the default when there is none."""
    row = MessageTemplate.objects.filter(kind=kind, channel=channel).values_list("subject", "body").first()
    if row is not None:
        return row
    default = DEFAULT_TEMPLATES[channel]
    return default["subject"], default["body"]


def _render(source: str, context: Mapping[str, Any]) -> str:
    try:
        return _ENGINE.from_string(source).render(Context(dict(context), autoescape=False))
    except TemplateSyntaxError as exc:
        raise TemplateInvalid(f"The template does not compile: {exc}") from exc
    except Exception as exc:  # a filter given a value it cannot take
        raise TemplateInvalid(f"The template does not render: {type(exc).__name__}: {exc}") from exc


def message_render(*, subject: str, body: str, context: Mapping[str, Any]) -> RenderedMessage:
    """The message from a template's subject and body; raises TemplateInvalid."""
    return RenderedMessage(
        subject=" ".join(_render(subject, context).split()), body=_render(body, context).strip()
    )


def template_check(source: str) -> None:
    """Raise TemplateInvalid if ``source`` does not compile (the admin form's check)."""
    try:
        _ENGINE.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateInvalid(str(exc)) from exc
