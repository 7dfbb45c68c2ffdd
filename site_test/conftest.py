"""The built site in a real browser (headless Chromium through Playwright): `make site-test`.

Not part of the unit tests (`pytest tests`): it needs a built site (`make book`) and Chromium.
Options: ``--site DIR`` (default ``_build/html``), ``--shots DIR`` (default
``_build/screenshots``). The browser is ``$CHROMIUM`` if set, else the first of chromium,
chromium-browser, google-chrome found on the PATH.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
LAUNCH_TIMEOUT_MS = 60_000
REPORT: list[str] = []  # lines for the end of the run (timings, counts)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("site", "the built site")
    group.addoption("--site", default=str(ROOT / "_build" / "html"),
                    help="the built site's folder (default _build/html)")
    group.addoption("--shots", default=str(ROOT / "_build" / "screenshots"),
                    help="where the screenshots go (default _build/screenshots)")


def site_folder(config: pytest.Config) -> Path:
    return Path(config.getoption("--site")).resolve()


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the site, as paths relative to it (Sphinx's own folders left out)."""
    if not (site / "index.html").is_file():
        return []
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if not p.relative_to(site).parts[0].startswith("_"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "page" in metafunc.fixturenames:
        pages = site_pages(site_folder(metafunc.config)) or ["(no site)"]
        metafunc.parametrize("page", pages)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("site test")
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def site(pytestconfig: pytest.Config) -> Path:
    folder = site_folder(pytestconfig)
    if not (folder / "index.html").is_file():
        pytest.exit(f"site test: no built site at {folder} (run `make book`, or pass --site DIR)",
                    returncode=2)
    return folder


@pytest.fixture(scope="session")
def shots(pytestconfig: pytest.Config) -> Path:
    folder = Path(pytestconfig.getoption("--shots")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def find_chromium() -> str:
    wanted = os.environ.get("CHROMIUM")
    if wanted:
        found = shutil.which(wanted) or (wanted if Path(wanted).is_file() else None)
        if not found:
            pytest.exit(f"site test: CHROMIUM={wanted} is not an executable", returncode=2)
        return found
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.exit("site test: no Chromium found (install it: `apt-get install chromium`, or set "
                "CHROMIUM to a Chromium or Chrome executable)", returncode=2)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.exit("site test: Playwright for Python is missing (pip install playwright; "
                    "its browsers are not needed, the system's Chromium is used)", returncode=2)
    executable = find_chromium()
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=executable, timeout=LAUNCH_TIMEOUT_MS,
                args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        except Error as error:
            pytest.exit(f"site test: {executable} did not start: {str(error).splitlines()[0]}",
                        returncode=2)
        REPORT.append(f"browser: {executable}, Chromium {chromium.version}")
        yield chromium
        chromium.close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="session")
def server(site: Path) -> Iterator[str]:
    """The site served on 127.0.0.1 (a free port), for the session."""
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
