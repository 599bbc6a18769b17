"""The notifications' admin pages at a laptop's 1366 px: every column of the list of
messages on screen, and the template page with its preview."""

from datetime import date

import pytest

from notifications import services
from notifications.models import MessageTemplate
from notifications.rendering import DEFAULT_TEMPLATES
from tests.browser.test_column_headers import assert_every_header_visible

pytestmark = pytest.mark.browser


def test_the_list_of_messages_shows_every_column_at_1366_px(logged_in, make_user, settings):
    settings.TWILIO_ACCOUNT_SID = ""  # SMS skipped, with its long reason in the list
    user = make_user(
        name="Maria Fernanda Gonçalves de Albuquerque",
        local_tz="America/Argentina/Buenos_Aires",
        notify_sms=True,
        notify_email=True,
        email="maria.fernanda.goncalves@example.com",
    )
    services.notify_missed_day(user_id=user.pk, local_date=date(2026, 11, 28))
    assert_every_header_visible(logged_in, "/admin/notifications/notification/", width=1366)
    logged_in.screenshot("list")


def test_the_template_page_previews_the_message(logged_in):
    # transaction=True tests start without the data migration's rows: the default, saved.
    template = MessageTemplate.objects.create(channel="email", **DEFAULT_TEMPLATES["email"])
    logged_in.open(f"/admin/notifications/messagetemplate/{template.pk}/change/")
    text = logged_in.page_text()
    assert "Hi Asha," in text and "We missed you on" in text
    width = logged_in.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 1366
