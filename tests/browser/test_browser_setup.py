"""The browser tests' own machinery: the skip that says how to install Chromium, the window
size and the screenshots."""

import struct

import pytest

from tests.browser.conftest import SCREENSHOTS, _browser_paths

pytestmark = pytest.mark.browser


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # IHDR's width and height


def test_a_machine_without_chromium_skips_saying_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither chromium nor chromedriver on it
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium chromium-driver"):
        _browser_paths()


def test_the_browser_opens_at_1366_px_and_names_screenshots_after_the_test(browser, request):
    browser.open("/admin/login/")
    assert browser.viewport()[0] == 1366
    path = browser.screenshot("login")
    assert path == SCREENSHOTS / f"browser_setup.{request.node.name}-login.png"
    assert png_size(path)[0] == 1366


@pytest.mark.browser(window=(1920, 1080))
def test_a_test_can_ask_for_a_1920_by_1080_window(browser):
    browser.open("/admin/login/")
    assert browser.driver.get_window_size() == {"width": 1920, "height": 1080}
    assert png_size(browser.screenshot())[0] == 1920
