"""Debian's Chromium driven by Selenium through Debian's chromedriver: no browser or driver is
downloaded at test time (`make test` installs the two packages when they are missing)."""

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "console"
# Without the background-networking flags Chromium tries Google's hosts at every start.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
WIDTH, HEIGHT = 1280, 1000
# A Chromium's start and first page cost ~3 CPU-s; an idle one ~0.01 CPU-s a second. A shared
# one is quit once no test has used it for this long (300 s of idle cost as much as a start).
IDLE_QUIT_S = 120.0
T = TypeVar("T")


def missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: `make test` installs chromium and chromium-driver"
    return None


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def fresh(driver: webdriver.Chrome) -> None:
    """`driver` as a test that started it would find it: a blank page at 1280x1000, no dialog
    open, and no cookie of any host (cookies are per host, not per port: another test's
    server on 127.0.0.1 would otherwise see them). Local and session storage are per origin,
    and every test's server has a port of its own."""
    with suppress(NoAlertPresentException):
        driver.switch_to.alert.dismiss()
    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.set_window_size(WIDTH, HEIGHT)


class Shared:
    """One Chromium lent to test after test (`lend`, `done`), started when first lent and quit
    once `IDLE_QUIT_S` pass with none lent, or at `close`."""

    def __init__(self, idle_quit_s: float = IDLE_QUIT_S) -> None:
        self.idle_quit_s = idle_quit_s
        self._lock = threading.Lock()
        self._stack: ExitStack | None = None
        self._driver: webdriver.Chrome | None = None
        self._timer: threading.Timer | None = None
        self._lent = 0  # a quit timer set at an older count finds the driver lent since

    def lend(self) -> webdriver.Chrome:
        """The browser, `fresh`; a new one when the last cannot be made fresh (it crashed)."""
        with self._lock:
            self._lent += 1
            if self._timer is not None:
                self._timer.cancel()
            if self._driver is not None:
                try:
                    fresh(self._driver)
                    return self._driver
                except WebDriverException:
                    self._quit()
            self._stack = ExitStack()
            self._driver = self._stack.enter_context(chromium())
            fresh(self._driver)
            return self._driver

    def done(self) -> None:
        """The test is over: a blank page (a live page polls its server every 5 s); a browser
        that cannot show one is quit, and the next test gets a new one."""
        with self._lock:
            if self._driver is not None:
                try:
                    fresh(self._driver)
                except WebDriverException:
                    self._quit()
            self._timer = threading.Timer(
                self.idle_quit_s, self._quit_unless_lent_since, (self._lent,)
            )
            self._timer.daemon = True
            self._timer.start()

    def _quit_unless_lent_since(self, lent: int) -> None:
        with self._lock:
            if lent == self._lent:
                self._quit()

    def close(self) -> None:
        with self._lock:
            self._lent += 1
            if self._timer is not None:
                self._timer.cancel()
            self._quit()

    def _quit(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._driver = self._stack, None, None
            stack.close()


def wait(
    driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], T], within: float = 15
) -> T:
    return WebDriverWait(driver, within, poll_frequency=0.1).until(condition)


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
