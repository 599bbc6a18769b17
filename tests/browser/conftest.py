"""Browser tests: the operator's pages driven in a real headless Chromium.

Selenium drives Debian's own ``chromium`` through Debian's ``chromedriver``, which is built
from the same Chromium release, so the two always match and nothing is downloaded: the
driver's path is given to ``Service`` explicitly, and with a path Selenium Manager (which
would otherwise look for, and fetch, a driver over the network) is never started.

One browser serves the whole session; each test gets it with no cookies, at its window size
(1366×768 unless ``@pytest.mark.browser(window=(W, H))`` says otherwise), against
pytest-django's ``live_server`` (a real HTTP server on 127.0.0.1 over the transactional test
database). Every test leaves a screenshot of its last page in tests/browser/screenshots/.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

INSTALL_HINT = "install them with: apt-get install -y chromium chromium-driver"
DEFAULT_WINDOW = (1366, 768)
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
# Long enough for a page of the admin on a busy two-core machine, short enough that a
# missing element fails the test in seconds rather than minutes.
WAIT_SECONDS = 10
OPERATOR_PASSWORD = "operator-password-for-browser-tests"
# Selenium Manager is never run (the driver's path is explicit); should a later Selenium
# reach for it anyway, it must not go to the network.
os.environ.setdefault("SE_OFFLINE", "true")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "browser(window=(width, height)): runs in headless Chromium (tests/browser); "
        "window defaults to 1366x768",
    )


_REPORTS = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # The screenshot taken at teardown says whether the test failed: keep each phase's report.
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", chromedriver)) if not path]
    if missing:
        pytest.skip(f"browser tests need {' and '.join(missing)}, not found on PATH: {INSTALL_HINT}")
    return chromium, chromedriver


@pytest.fixture(scope="session")
def chromium_driver() -> WebDriver:
    """The one headless Chromium of the session (skipped, saying how to install it, when the
    machine has none)."""
    chromium, chromedriver = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        # Root in a container: Chromium's sandbox needs user namespaces it may not have.
        "--no-sandbox",
        # /dev/shm is 64 MB in Docker: Chromium would crash on a large page.
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--lang=en-US",
        f"--window-size={DEFAULT_WINDOW[0]},{DEFAULT_WINDOW[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    yield driver
    driver.quit()


@dataclass
class Browser:
    """The session's Chromium pointed at the live server, with the few steps tests repeat."""

    driver: WebDriver
    base_url: str
    test_name: str

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def reload(self) -> None:
        self.driver.refresh()

    @property
    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base_url)

    def find(self, css: str) -> WebElement:
        """The element ``css`` selects, waiting for it to appear."""
        return WebDriverWait(self.driver, WAIT_SECONDS).until(
            lambda driver: driver.find_element(By.CSS_SELECTOR, css),
            message=f"nothing matches {css!r} on {self.path} within {WAIT_SECONDS} s",
        )

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def scroll_to(self, css: str) -> None:
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", self.find(css))

    def page_text(self) -> str:
        """What a person reads on the page (visible text only)."""
        return self.driver.find_element(By.TAG_NAME, "body").text

    def viewport(self) -> tuple[int, int]:
        width, height = self.driver.execute_script(
            "return [document.documentElement.clientWidth, document.documentElement.clientHeight]"
        )
        return width, height

    def log_in_as(self, user) -> None:
        """Log ``user`` in without the login form (its own test goes through the form): a
        session made by Django's test client, handed to the browser as its cookie."""
        client = Client()
        client.force_login(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        # A cookie can only be set for the site the browser is on.
        self.open("/admin/login/")
        self.driver.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "path": "/"})

    def screenshot(self, label: str = "") -> Path:
        """Save the page as tests/browser/screenshots/<test>[-<label>].png."""
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / (self.test_name + (f"-{label}" if label else "") + ".png")
        self.driver.save_screenshot(str(path))
        return path


def _screenshot_name(item: pytest.Item) -> str:
    module = Path(item.path).stem.removeprefix("test_")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{module}.{item.name}")


@pytest.fixture
def browser(request: pytest.FixtureRequest, chromium_driver: WebDriver, live_server) -> Browser:
    """Chromium at the test's window size with no session, and a screenshot of where the
    test ended, passed or failed (``<test>.png``, or ``<test>.FAILED.png``)."""
    marker = request.node.get_closest_marker("browser")
    width, height = (marker.kwargs.get("window") if marker else None) or DEFAULT_WINDOW
    driver = chromium_driver
    driver.set_window_size(width, height)
    driver.delete_all_cookies()
    page = Browser(driver=driver, base_url=live_server.url, test_name=_screenshot_name(request.node))
    yield page

    call_report = request.node.stash.get(_REPORTS, {}).get("call")
    # An expected failure (xfail) failed too: its picture shows what is still wrong.
    failed = call_report is not None and (
        call_report.failed or (call_report.skipped and hasattr(call_report, "wasxfail"))
    )
    passed_name = SCREENSHOTS / f"{page.test_name}.png"
    failed_name = SCREENSHOTS / f"{page.test_name}.FAILED.png"
    # Only this run's outcome stays on disk: an old FAILED picture must not linger.
    (passed_name if failed else failed_name).unlink(missing_ok=True)
    SCREENSHOTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(failed_name if failed else passed_name))
    # Leave the shared browser on a blank page: the next test's first request is its own.
    driver.get("about:blank")


@pytest.fixture
def operator(transactional_db):
    """A staff user who may do everything in the admin (a superuser), with no phone and
    calls off: an operator is not someone relevel phones."""
    from users.models import User

    return User.objects.create_user(
        username="operator",
        password=OPERATOR_PASSWORD,
        name="Ops Person",
        is_staff=True,
        is_superuser=True,
        call_enabled=False,
    )


@pytest.fixture
def logged_in(browser: Browser, operator) -> Browser:
    """The browser with ``operator`` logged in."""
    browser.log_in_as(operator)
    return browser
