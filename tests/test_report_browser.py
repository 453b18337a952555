"""The report rendered in a real browser: headless Chromium (Debian's chromium + chromium-driver) through
selenium. Every image loads, the console stays clean, every table has rows; a screenshot is kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from report_series import record_series
from workbench.report import build_report
from workbench.tracking.store import Store

CHROMEDRIVER = Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMEDRIVER.exists() and shutil.which("chromium")),
                                reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "out" / "test-screenshots"


def chromium(profile: Path, width: int = 1280, height: int = 1800):
    """A headless Chromium that keeps the browser console log (flags: FIELD_NOTES, Browser)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def check_page(driver, url: str, screenshot: Path) -> dict:
    """Load ``url``; returns what the test asserts on (images, tables, console errors) and writes a
    full-page screenshot."""
    driver.get(url)
    images = driver.execute_script(
        "return [...document.images].map(i => [i.alt, i.complete, i.naturalWidth]);")
    tables = driver.execute_script(
        "return [...document.querySelectorAll('table')].map(t => "
        "[t.caption ? t.caption.textContent : '', t.tBodies[0] ? t.tBodies[0].rows.length : 0]);")
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(1280, min(height + 40, 16000))
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return {"images": images, "tables": tables, "errors": errors}


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    store = Store.in_folder(tmp_path / "store")
    record_series(store, tmp_path / "nb")
    html, _ = build_report(store, tmp_path / "report")
    # the page stands alone: moved away from its figures folder it still shows every image
    alone = tmp_path / "mailed" / "index.html"
    alone.parent.mkdir()
    shutil.copy(html, alone)
    driver = chromium(tmp_path / "profile")
    try:
        seen = check_page(driver, alone.as_uri(), SCREENSHOTS / "report.png")
    finally:
        driver.quit()
    assert len(seen["images"]) == 3 and all(done and width > 0 for _, done, width in seen["images"]), seen["images"]
    assert seen["tables"] and all(rows > 0 for _, rows in seen["tables"]), seen["tables"]
    assert seen["errors"] == []
    assert (SCREENSHOTS / "report.png").stat().st_size > 10_000
