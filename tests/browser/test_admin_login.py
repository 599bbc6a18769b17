"""Logging in to the admin through its own form, as an operator does."""

import pytest

from tests.browser.conftest import OPERATOR_PASSWORD

pytestmark = pytest.mark.browser


def test_an_operator_logs_in_through_the_admin_login_form(browser, operator):
    browser.open("/admin/")
    assert browser.path.startswith("/admin/login/")

    browser.find("#id_username").send_keys("operator")
    browser.find("#id_password").send_keys(OPERATOR_PASSWORD)
    browser.find("#login-form input[type=submit]").click()

    browser.find("#site-name")
    assert browser.path == "/admin/"
    text = browser.page_text()
    assert "Daily calls" in text  # the index title
    assert "WELCOME, OPERATOR." in text.upper()  # the header is upper-cased by CSS
    assert "LOG OUT" in text.upper()


def test_a_wrong_password_is_refused_on_the_login_page(browser, operator):
    browser.open("/admin/login/")
    browser.find("#id_username").send_keys("operator")
    browser.find("#id_password").send_keys("not-the-password")
    browser.find("#login-form input[type=submit]").click()

    error = browser.find(".errornote")
    assert "correct username and password" in error.text
    assert browser.path.startswith("/admin/login/")
