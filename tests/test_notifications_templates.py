"""Message templates operators edit in the admin (issue 19): defaults from the data
migration, Django template syntax checked on save, a preview; the list of every message."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from django.urls import reverse

from notifications import services
from notifications.models import Channel, MessageTemplate, Notification
from notifications.rendering import TemplateInvalid, message_context, message_render

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 28)


def test_the_data_migration_made_one_default_template_per_channel():
    templates = {t.channel: t for t in MessageTemplate.objects.all()}
    assert set(templates) == {Channel.SMS, Channel.EMAIL}
    assert "STOP" in templates[Channel.SMS].body and templates[Channel.SMS].subject == ""
    assert templates[Channel.EMAIL].subject


def test_the_context_has_the_users_fields_the_date_and_their_own_context_variables(make_user):
    user = make_user(name="Asha Rao", external_id="crm-42", local_tz="Asia/Kolkata")
    user.context = {"caregiver": "Ravi"}  # a per-user context JSON, when the user has one
    context = message_context(user=user, local_date=DAY)
    message = message_render(
        subject="",
        body="{{ first_name }}/{{ name }}/{{ external_id }}/{{ time_zone }}/{{ local_date|date:'Y-m-d' }}/"
        "{{ context.caregiver }}",
        context=context,
    )
    assert message.body == "Asha/Asha Rao/crm-42/Asia/Kolkata/2026-11-28/Ravi"
    assert "user" not in context  # a template cannot reach the user object (password hash...)


def test_text_is_not_html_escaped():
    context = {"name": "Ana & Raj <3", "first_name": "Ana"}
    assert message_render(subject="{{ name }}", body="{{ name }}", context=context).body == "Ana & Raj <3"


def test_a_template_that_does_not_render_fails_the_message_with_the_reason(make_user, twilio):
    MessageTemplate.objects.filter(channel=Channel.SMS).update(body="{% if %}")
    user = make_user(notify_sms=True)
    with time_machine.travel(datetime(2026, 11, 28, 8, 30, tzinfo=UTC), tick=False):
        [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=DAY)
        assert services.notification_send(notification_id=notification_id) == "failed"
    assert Notification.objects.get(pk=notification_id).error.startswith("The template does not compile")
    assert not twilio.requests
    with pytest.raises(TemplateInvalid):
        message_render(subject="", body="{% endif %}", context={})


def test_the_admin_refuses_a_template_that_does_not_compile_and_shows_a_preview(admin_client):
    template = MessageTemplate.objects.get(channel=Channel.SMS)
    url = reverse("admin:notifications_messagetemplate_change", args=[template.pk])
    page = admin_client.get(url)
    html = page.content.decode()
    assert page.status_code == 200
    assert "Hi Asha, we tried to call you on" in html and "characters" in html  # the preview

    data = {"kind": template.kind, "channel": template.channel, "subject": "", "body": "Hi {% if name %}"}
    refused = admin_client.post(url, data)
    assert refused.status_code == 200 and "This template does not compile" in refused.content.decode()
    template.refresh_from_db()
    assert template.body.startswith("Hi {{ first_name }}")

    data["body"] = "Hello {{ name }}, {{ context.caregiver }} says hi"
    assert admin_client.post(url, data).status_code == 302
    assert "Hello Asha Rao, Ravi says hi" in admin_client.get(url).content.decode()


def test_an_email_template_needs_a_subject(admin_client):
    template = MessageTemplate.objects.get(channel=Channel.EMAIL)
    url = reverse("admin:notifications_messagetemplate_change", args=[template.pk])
    response = admin_client.post(
        url, {"kind": template.kind, "channel": "email", "subject": " ", "body": "x"}
    )
    assert "An e-mail needs a subject." in response.content.decode()


def test_the_admin_lists_every_message_masked_and_cannot_edit_them(admin_client, make_user, settings):
    settings.TWILIO_ACCOUNT_SID = ""  # SMS skipped: not configured
    user = make_user(phone="+919876543210", notify_sms=True, notify_email=True, email="asha@example.com")
    services.notify_missed_day(user_id=user.pk, local_date=DAY)
    page = admin_client.get(reverse("admin:notifications_notification_changelist"))
    html = page.content.decode()
    assert page.status_code == 200
    assert "*********3210" in html and "a***@example.com" in html
    assert "+919876543210" not in html and "asha@example.com" not in html
    assert "Twilio is not configured" in html and "Skipped" in html and "Waiting" in html
    notification = Notification.objects.first()
    detail = admin_client.get(reverse("admin:notifications_notification_change", args=[notification.pk]))
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert admin_client.get(reverse("admin:notifications_notification_add")).status_code == 403
    delete = reverse("admin:notifications_notification_delete", args=[notification.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Notification.objects.filter(pk=notification.pk).exists()


def test_the_opt_out_list_shows_who_stopped_and_how(admin_client, make_user):
    from notifications.sms_opt_outs import sms_opt_out

    user = make_user(name="Asha Rao")
    sms_opt_out(user_id=user.pk, source="sms", keyword="STOP", message_sid="SM1")
    page = admin_client.get(reverse("admin:notifications_smsoptout_changelist"))
    assert page.status_code == 200 and "Asha Rao" in page.content.decode()
