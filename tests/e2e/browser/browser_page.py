"""The Airflow UI in a browser, step by step, for the real-browser tests (conftest.py):
every step saves a screenshot, and a failed step says what the page was missing, with its
screenshot and the start of the page's visible text."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

WAIT_S = 30.0
TEXT_SHOWN = 800


class StepFailed(AssertionError):
    """A step found the page without what it needed."""


def xpath_literal(text: str) -> str:
    """``text`` as an XPath 1.0 string literal (quotes of either kind)."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    parts = ', "\'", '.join(f"'{part}'" for part in text.split("'"))
    return f"concat({parts})"


class Page:
    """The UI in the browser, step by step: ``with page.step("login"):`` names the step
    and saves its screenshot; ``wait_for`` and ``check`` fail with the step, what the page
    was missing, a screenshot and the page's visible text."""

    def __init__(self, driver, base_url: str, folder: Path):
        self.driver, self.base_url, self.folder = driver, base_url.rstrip("/"), folder
        self.current = "start"
        self.shots = 0

    # Steps and their evidence

    @contextlib.contextmanager
    def step(self, name: str):
        """One step: a screenshot when it ends; a failure inside names the step."""
        self.current = name
        try:
            yield self
        except StepFailed:
            raise
        except Exception as exc:  # an assertion or a WebDriver error inside the step
            self.fail(f"{type(exc).__name__}: {exc}", cause=exc)
        self.screenshot(name)

    def screenshot(self, name: str) -> Path:
        self.shots += 1
        slug = re.sub(r"[^\w.-]+", "_", name)
        path = self.folder / f"{self.shots:02d}-{slug}.png"
        try:
            self.driver.save_screenshot(str(path))
        except Exception as exc:  # a dead browser must not hide the real failure
            return Path(f"{path} (not saved: {exc})")
        return path

    def visible_text(self) -> str:
        from selenium.webdriver.common.by import By

        try:
            text = self.driver.find_element(By.TAG_NAME, "body").text
        except Exception as exc:
            return f"(unreadable: {exc})"
        return " | ".join(line.strip() for line in text.splitlines() if line.strip())

    def fail(self, message: str, cause: BaseException | None = None):
        shot = self.screenshot(f"{self.current}-FAILED")
        try:
            url = self.driver.current_url
        except Exception:
            url = "(unknown)"
        raise StepFailed(
            f"step {self.current!r}: {message}\n"
            f"  url: {url}\n  screenshot: {shot}\n"
            f"  visible text: {self.visible_text()[:TEXT_SHOWN]}"
        ) from cause

    def check(self, condition, message: str) -> None:
        """Fail the step with ``message`` (what the page is missing) unless ``condition``."""
        if not condition:
            self.fail(message)

    # Finding things

    def find_all(self, css: str | None = None, xpath: str | None = None, text: str | None = None):
        """Displayed elements matching a CSS selector, an XPath, or holding ``text`` in one
        of their own text nodes."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        if text is not None:
            xpath = f"//body//*[text()[contains(normalize-space(.), {xpath_literal(text)})]]"
        by, selector = (By.CSS_SELECTOR, css) if css is not None else (By.XPATH, xpath)
        found = []
        for element in self.driver.find_elements(by, selector):
            with contextlib.suppress(StaleElementReferenceException):
                if element.is_displayed():
                    found.append(element)
        return found

    def wait_for(
        self,
        css: str | None = None,
        xpath: str | None = None,
        text: str | None = None,
        *,
        what: str,
        timeout: float = WAIT_S,
    ):
        """The first displayed element that matches; on timeout the step fails with "the
        page has no WHAT"."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find_all(css, xpath, text)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                selector = css or xpath or f"text {text!r}"
                self.fail(f"the page has no {what} (waited {timeout:.0f}s for {selector})")
            time.sleep(0.25)

    def until(self, probe, *, what, timeout: float = WAIT_S):
        """``probe()``'s first truthy result; on timeout the step fails with "the page has
        no WHAT" (``what`` may be a function, called then)."""
        from selenium.common.exceptions import StaleElementReferenceException

        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(StaleElementReferenceException):
                result = probe()
                if result:
                    return result
            if time.monotonic() > deadline:
                what = what() if callable(what) else what
                self.fail(f"the page has no {what} (waited {timeout:.0f}s)")
            time.sleep(0.25)

    # Acting

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def click(self, element, attempts: int = 3) -> None:
        """Click once the element is on screen; an overlay of the form (seen once in CI)
        that intercepts the click gets a second to go away, then the click is retried."""
        from selenium.common.exceptions import ElementClickInterceptedException

        for attempt in range(attempts):
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
            try:
                element.click()
                return
            except ElementClickInterceptedException:
                if attempt == attempts - 1:
                    raise
                time.sleep(1)

    def type_into(self, locate, value: str, *, what: str, attempts: int = 3) -> None:
        """Replace the text of the input ``locate()`` returns with ``value`` and check that
        the input holds it. React's controlled inputs have been seen to drop a key when
        typed into at full speed: then it is typed again, key by key."""
        from selenium.webdriver.common.keys import Keys

        got = None
        for attempt in range(attempts):
            element = locate()
            self.click(element)
            element.send_keys(Keys.CONTROL, "a")
            element.send_keys(Keys.DELETE)
            if attempt == 0:
                element.send_keys(value)
            else:
                for key in value:
                    element.send_keys(key)
            got = locate().get_attribute("value")
            if got == value:
                return
        self.fail(f"{what} does not keep what was typed: {value!r}, it holds {got!r}")

    def login(self, user: str, password: str) -> None:
        """Sign in through the Simple auth manager's form (the UI redirects there)."""
        self.open("/")
        username = self.wait_for(
            css="input[name=username]", what="login form (its Username field)", timeout=60
        )
        self.check("/auth/login" in self.driver.current_url, "redirect to /auth/login")
        username.send_keys(user)
        self.wait_for(css="input[name=password]", what="Password field").send_keys(password)
        self.click(self.wait_for(css="button[type=submit]", what="Sign in button"))
        self.wait_for(css="[data-testid=nav-sidebar]", what="navigation after signing in")
        self.check(
            self.driver.get_cookie("_token"), "JWT cookie _token after signing in (no session)"
        )

    def logged_in(self) -> bool:
        self.open("/")
        return self.driver.get_cookie("_token") is not None
