"""Fixtures of the real-browser tests: one Tureen + demo app + Chromium per test module.

Every failure report gets the browser console (all pages), the Tureen log and the demo app log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import OUTPUT, SETUP_HINT, Browser, DemoPage, Stack, missing_prerequisites


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`tureen serve --workers N` (module attribute TUREEN_WORKERS, default 2) and the demo app."""
    workers = getattr(request.module, "TUREEN_WORKERS", 2)
    stack = Stack(tmp_path_factory.mktemp("stack"), workers=workers)
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    missing = missing_prerequisites()
    if missing:
        pytest.fail(f"browser tests need {', '.join(missing)}: {SETUP_HINT}", pytrace=False)
    browser = Browser(tmp_path_factory.mktemp("browser") / "console.log")
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def room(request: pytest.FixtureRequest) -> str:
    """A room id unique to the test."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60]


@pytest.fixture
def open_page(browser: Browser, stack: Stack, room: str) -> Iterator[object]:
    """open_page(name, **query) -> DemoPage in the test's room; all closed after the test."""
    pages: list[DemoPage] = []

    def open_(name: str, **params: object) -> DemoPage:
        page = DemoPage(browser, stack, room, name, **params)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        try:
            page.close()
        except Exception:  # already closed by the test, or the browser is gone
            pass


@pytest.fixture
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when not in ("setup", "call") or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    browser = funcargs.get("browser")
    stack = funcargs.get("stack")
    if isinstance(browser, Browser):
        report.sections.append(("browser console (all pages)", browser.console()))
        driver = browser.driver_log()
        if driver.strip():
            report.sections.append(("browser driver stderr", driver))
    if isinstance(stack, Stack):
        report.sections.append(("tureen serve log", stack.server.log()))
        report.sections.append(("demo app log", stack.app_log()))
