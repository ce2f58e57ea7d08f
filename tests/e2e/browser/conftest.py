"""Real-browser tests: headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by Selenium against the Airflow stack of tests/e2e/conftest.py (the ``airflow``
fixture: api-server, scheduler and dag-processor as real processes).

Selenium never downloads anything: the driver and the browser are given by path
(``/usr/bin/chromedriver``, ``/usr/bin/chromium``; ``SLMOPS_CHROMEDRIVER`` and
``SLMOPS_CHROMIUM`` override them), so Selenium Manager is not run. When Debian's
packages are missing, the session installs them (``apt-get``, as root, under a lock);
when that is not possible (not root, no apt, ``SLMOPS_BROWSER_NO_INSTALL=1``) every test
here is skipped with the reason.

Each step of a test saves a screenshot under ``SLMOPS_BROWSER_ARTIFACTS`` (default: the
pytest session's basetemp, ``browser/``), one folder per test; a failed step names what
the page was missing, its screenshot and the start of the page's visible text.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from browser_page import Page

from slmops_airflow.cluster.services import APT_LOCK, APT_WAIT

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
DEBIAN_CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ("chromium", "chromium-driver")
INSTALL_TIMEOUT_S = 1800

ARTIFACTS_KEY = pytest.StashKey[Path]()


# --- Chromium: found, installed, or the reason it is not there -------------------------


def _paths() -> tuple[Path, Path]:
    return (
        Path(os.environ.get("SLMOPS_CHROMIUM") or DEBIAN_CHROMIUM),
        Path(os.environ.get("SLMOPS_CHROMEDRIVER") or DEBIAN_CHROMEDRIVER),
    )


def _missing(paths: tuple[Path, Path]) -> list[str]:
    return [str(path) for path in paths if not (path.is_file() and os.access(path, os.X_OK))]


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _install_chromium(paths: tuple[Path, Path]) -> str | None:
    """Install Debian's chromium and chromium-driver; None once they are there, else why
    they could not be installed."""
    if os.environ.get("SLMOPS_BROWSER_NO_INSTALL"):
        return "installing is turned off (SLMOPS_BROWSER_NO_INSTALL is set)"
    if paths != (DEBIAN_CHROMIUM, DEBIAN_CHROMEDRIVER):
        return "SLMOPS_CHROMIUM / SLMOPS_CHROMEDRIVER name other paths than Debian's packages"
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        return "apt-get is not on PATH (not a Debian/Ubuntu machine)"
    if os.geteuid() != 0:
        return "installing Debian's packages needs root (apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    commands = (
        [apt_get, *APT_WAIT, "update"],
        [apt_get, *APT_WAIT, "install", "-y", *PACKAGES],
    )
    with APT_LOCK.open("w") as lock:  # one apt-get at a time (the cluster tests install too)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _missing(paths):
            return None
        for command in commands:
            try:
                done = subprocess.run(
                    command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"{' '.join(command)}: {exc}"
            if done.returncode != 0:
                return (
                    f"{' '.join(command)} exited with {done.returncode}:\n"
                    f"{_tail(done.stderr or done.stdout)}"
                )
    missing = _missing(paths)
    return f"apt-get installed {' '.join(PACKAGES)} but {missing} are missing" if missing else None


@pytest.fixture(scope="session", autouse=True)
def chromium() -> tuple[Path, Path]:
    """(browser, driver): Debian's chromium and chromedriver, installed when missing; every
    test here is skipped, with the reason, when they are neither there nor installable.
    Autouse, so the skip comes before the Airflow stack is started."""
    paths = _paths()
    missing = _missing(paths)
    if missing:
        why = _install_chromium(paths)
        if why is not None:
            pytest.skip(
                f"real-browser tests need chromium and chromedriver: {missing} missing, and "
                f"they could not be installed: {why}"
            )
    return paths


# --- The browser -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_artifacts(request, tmp_path_factory) -> Path:
    """Screenshots and the driver's log: $SLMOPS_BROWSER_ARTIFACTS, else basetemp/browser
    (pytest keeps the last three basetemps)."""
    given = os.environ.get("SLMOPS_BROWSER_ARTIFACTS")
    folder = Path(given) if given else tmp_path_factory.getbasetemp() / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    request.config.stash[ARTIFACTS_KEY] = folder
    print(f"browser screenshots: {folder}")
    return folder


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    folder = config.stash.get(ARTIFACTS_KEY, None)
    if folder is not None:
        terminalreporter.write_line(f"browser screenshots: {folder}")


@pytest.fixture(scope="module")
def browser(chromium, browser_artifacts, tmp_path_factory):
    """A headless Chromium (Selenium WebDriver) for one test module; quit at its end."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    # Only Selenium Manager reads it, and it is never run (both paths are given).
    os.environ.setdefault("SE_OFFLINE", "true")
    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root on CI
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--lang=en-US",  # the UI follows the browser's language
        "--no-first-run",
        "--disable-search-engine-choice-screen",
    ):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    service = Service(
        executable_path=str(driver_path),
        log_output=str(browser_artifacts / "chromedriver.log"),
    )
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as exc:
        log = browser_artifacts / "chromedriver.log"
        text = log.read_text(errors="replace") if log.exists() else "(no log)"
        raise RuntimeError(
            f"{driver_path} could not start {binary}: {exc.msg}\n{log}:\n{_tail(text)}"
        ) from exc
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, airflow, browser_artifacts, request):
    """The browser on the stack's UI, saving this test's screenshots in a folder of its own."""
    module = Path(str(request.node.path)).stem
    folder = browser_artifacts / module / re.sub(r"[^\w.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"screenshots of {request.node.name}: {folder}")
    return Page(browser, airflow.url, folder)
