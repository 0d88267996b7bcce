"""The fleet page in a real browser: headless Chromium (Debian's chromium + chromium-driver)
driven by Selenium, against a real `mindproject serve` process on the file backend.

One server and one browser for the module (the tests run in file order and share them; each
uses its own devices). Screenshots of the fleet and device pages at 1366x768 and 390x844 land in
test-artifacts/screenshots/ (README: "The fleet page").
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mindproject.identifiers import new_version_id
from mindproject.storage.filesystem import FileStorage
from tests.helpers import REPO, RunningServer, make_token, measured, run_server

pytestmark = [pytest.mark.browser, pytest.mark.server]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
from selenium.common.exceptions import NoAlertPresentException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
XSS_NAME = '<img src=x onerror="window.__xss=1;alert(1)">'
# A bound on each wait for the page, never a claim about speed (the usual wait is milliseconds).
WAIT_SECONDS = 30
OPERATOR = make_token("operator")
PAGED = 26
FIRST = ["alpha-1", "alpha-2", "beta-1", "gamma-old", "to-delete", "to-revoke", "xss-1"]
ADMIN = make_token("admin")


def _seed(data: Path) -> dict[str, bytes]:
    """Devices written into the file backend before the server starts: some silent for days."""
    contents: dict[str, bytes] = {}

    async def seed() -> None:
        storage = FileStorage(data, fsync=False)
        plan = [
            ("alpha-1", 2 * 3600, b"alpha one"),
            ("alpha-2", 60, b"alpha two, newer"),
            ("beta-1", 3 * 86400, b"beta, silent for days"),
            ("gamma-old", 9 * 86400, b"the most silent"),
            ("to-delete", 600, b"delete me"),
            ("to-revoke", 600, b"revoke me"),
        ]
        for device, seconds_ago, body in plan:
            version = new_version_id(int((time.time() - seconds_ago) * 1e6))
            await storage.save(
                device, version, measured(body), filename=f"{device}.txt", content_type="text/plain"
            )
            contents[device] = body
        for n in range(PAGED):  # enough devices for two pages of 25
            await storage.save(
                f"zz-page-{n:02d}",
                new_version_id(),
                measured(b"p"),
                filename=None,
                content_type=None,
            )
        await storage.save(
            "xss-1",
            new_version_id(),
            measured(b"hostile name"),
            filename=XSS_NAME,
            content_type="text/plain",
        )
        await storage.close()

    asyncio.run(seed())
    return contents


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, dict[str, bytes]]]:
    tmp = tmp_path_factory.mktemp("page")
    data = tmp / "data"
    contents = _seed(data)
    with run_server(tmp, f"file://{data}") as running:
        yield running, contents


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator[Any]:
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(binary).exists():
            pytest.skip(f"{binary} is missing: `make test` installs the Debian package {package}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1366,768",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def console(browser: Any) -> list[dict[str, Any]]:
    """Every browser console entry of the module (read after each test)."""
    return []


@pytest.fixture(autouse=True)
def _collect_console(request: pytest.FixtureRequest) -> Iterator[None]:
    if "browser" not in request.fixturenames:
        yield
        return
    driver, seen = request.getfixturevalue("browser"), request.getfixturevalue("console")
    yield
    seen.extend(driver.get_log("browser"))


# --- helpers --------------------------------------------------------------------------------
def wait(driver: Any, predicate: Any, what: str) -> Any:
    try:
        return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.05).until(predicate)
    except TimeoutException:
        pytest.fail(f"the page never showed: {what}")


def by_id(driver: Any, element_id: str) -> Any:
    return driver.find_element(By.ID, element_id)


def visible(driver: Any, element_id: str) -> bool:
    return bool(by_id(driver, element_id).is_displayed())


def sign_in(driver: Any, url: str, token: str) -> None:
    driver.get(f"{url}/#/")
    if visible(driver, "account"):
        by_id(driver, "sign-out").click()
    wait(driver, lambda d: visible(d, "signin-view"), "the sign-in form")
    field = by_id(driver, "token-input")
    field.clear()
    field.send_keys(token)
    by_id(driver, "signin-button").click()


def table_devices(driver: Any) -> list[str]:
    # Read in one script: the table may be re-rendered between two WebDriver calls.
    ids: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#device-rows tr[data-device]')]"
        ".map((row) => row.dataset.device)"
    )
    return ids


def wait_for_devices(driver: Any, expected: list[str]) -> None:
    wait(driver, lambda d: table_devices(d) == expected, f"the devices {expected}")


def open_device(driver: Any, url: str, device: str) -> None:
    driver.get(f"{url}/#/device/{device}")
    wait(
        driver,
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, "#upload-rows tr[data-version]")
            and by_id(d, "device-title").text == device
        ),
        f"the uploads of {device}",
    )


def screenshot(driver: Any, name: str, width: int, height: int) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    driver.execute_script("window.scrollTo(0, 0)")
    try:
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name}: the page scrolls sideways by {overflow}px at {width}px"
        assert driver.save_screenshot(str(SCREENSHOTS / f"{name}-{width}x{height}.png"))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


# --- the tests, in the order an operator meets the page ----------------------------------------
def test_a_device_token_is_refused_with_a_clear_message(site, browser) -> None:
    server, _ = site
    sign_in(browser, server.url, make_token("device", "alpha-1"))
    wait(browser, lambda d: "device token" in by_id(d, "signin-error").text, "the refusal")
    assert "alpha-1" in by_id(browser, "signin-error").text
    assert "operator or admin token" in by_id(browser, "signin-error").text
    assert browser.execute_script("return sessionStorage.length") == 0
    assert not visible(browser, "fleet-view")


def test_sign_in_shows_summary_tiles_and_the_table(site, browser) -> None:
    server, _ = site
    sign_in(browser, server.url, OPERATOR)
    wait(browser, lambda d: table_devices(d)[:7] == FIRST, "the devices in id order")
    assert len(table_devices(browser)) == 7 + PAGED
    tiles = {
        tile.get_attribute("data-tile"): tile.find_element(By.CLASS_NAME, "value").text
        for tile in browser.find_elements(By.CSS_SELECTOR, "#tiles li[data-tile]")
    }
    assert tiles["Devices"] == str(7 + PAGED)
    assert tiles["Silent for 24h"] == "2"  # beta-1, gamma-old
    assert tiles["Uploads, last day"] == str(5 + PAGED)
    # The token is in this tab's sessionStorage only: not in the URL, a cookie or localStorage.
    assert browser.execute_script("return sessionStorage.getItem('mindproject.token')") == OPERATOR
    assert browser.execute_script("return localStorage.length") == 0
    assert browser.execute_script("return document.cookie") == ""
    assert OPERATOR not in browser.current_url
    assert by_id(browser, "role-badge").text == "Signed in: operator"
    screenshot(browser, "fleet", 1366, 768)
    screenshot(browser, "fleet", 390, 844)


def test_search_by_prefix(site, browser) -> None:
    field = by_id(browser, "prefix-input")
    field.clear()
    field.send_keys("alpha")
    by_id(browser, "search-button").click()
    wait_for_devices(browser, ["alpha-1", "alpha-2"])
    field.clear()
    by_id(browser, "search-button").click()
    wait(browser, lambda d: len(table_devices(d)) == 7 + PAGED, "every device again")


def test_sort_by_last_upload_and_silent_highlighting(site, browser) -> None:
    Select(by_id(browser, "sort-input")).select_by_value("last_upload_at")
    wait(
        browser,
        lambda d: table_devices(d)[:3] == ["gamma-old", "beta-1", "alpha-1"],
        "oldest first",
    )
    silent = browser.find_elements(By.CSS_SELECTOR, "#device-rows tr.silent")
    assert [row.get_attribute("data-device") for row in silent] == ["gamma-old", "beta-1"]
    assert "Silent" in silent[0].text
    # A tighter threshold: alpha-1 (2 h) is silent too; the silent-only filter asks the server.
    Select(by_id(browser, "silent-input")).select_by_value("1h")
    by_id(browser, "silent-only").click()
    wait_for_devices(browser, ["gamma-old", "beta-1", "alpha-1"])
    by_id(browser, "silent-only").click()
    Select(by_id(browser, "silent-input")).select_by_value("24h")
    Select(by_id(browser, "sort-input")).select_by_value("device_id")
    wait(browser, lambda d: table_devices(d)[0] == "alpha-1", "the id order again")


def test_paging_walks_every_device(site, browser) -> None:
    assert not by_id(browser, "next-page").is_enabled()  # 50 a page: one page
    Select(by_id(browser, "page-size")).select_by_value("25")
    wait(browser, lambda d: len(table_devices(d)) == 25, "a page of 25")
    first = table_devices(browser)
    assert first[:7] == FIRST and not by_id(browser, "previous-page").is_enabled()
    by_id(browser, "next-page").click()
    wait(browser, lambda d: len(table_devices(d)) == 7 + PAGED - 25, "the second page")
    second = table_devices(browser)
    assert sorted(first + second) == first + second and not set(first) & set(second)
    assert not by_id(browser, "next-page").is_enabled()
    assert "Page 2" in by_id(browser, "page-status").text
    by_id(browser, "previous-page").click()
    wait(browser, lambda d: table_devices(d) == first, "the first page again")
    Select(by_id(browser, "page-size")).select_by_value("50")
    wait(browser, lambda d: len(table_devices(d)) == 7 + PAGED, "one page of every device")


def test_open_a_device_and_download_a_version(site, browser, downloads) -> None:
    _, contents = site
    browser.find_element(By.LINK_TEXT, "beta-1").click()
    wait(browser, lambda d: by_id(d, "device-title").text == "beta-1", "the device page")
    row = wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#upload-rows tr[data-version]"),
        "the uploads",
    )[0]
    cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
    expected = contents["beta-1"]
    assert cells[2] == "beta-1.txt" and cells[3] == "text/plain"
    assert cells[4] == hashlib.sha256(expected).hexdigest()
    assert not visible(browser, "admin-actions")  # operators: no delete, no revoke
    wait(
        browser, lambda d: "1 upload in the last 7 days" in by_id(d, "chart-summary").text, "chart"
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#chart svg rect.bar-rect")
    row.find_element(By.TAG_NAME, "button").click()
    target = downloads / "beta-1.txt"
    wait(browser, lambda d: target.exists() and target.read_bytes() == expected, "the download")
    screenshot(browser, "device", 1366, 768)
    screenshot(browser, "device", 390, 844)


def test_a_hostile_filename_is_shown_as_text_and_runs_nothing(site, browser) -> None:
    server, _ = site
    open_device(browser, server.url, "xss-1")
    cell = browser.find_element(By.CSS_SELECTOR, "#upload-rows tr[data-version] td.name")
    assert cell.text == XSS_NAME
    assert not cell.find_elements(By.TAG_NAME, "img")
    assert browser.execute_script("return window.__xss") is None
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is the check


def test_an_operator_resumes_an_upload_with_the_device_s_token(site, browser, tmp_path) -> None:
    """Operators may not upload with their own token: they paste the device's. An upload the
    page started before (its URL kept in sessionStorage, 4 MiB already sent) is resumed where
    it stopped (HEAD, then PATCH from there), not started again."""
    server, _ = site
    data = os.urandom(9 * 1024 * 1024)
    path = tmp_path / "resumed.bin"
    path.write_bytes(data)
    os.utime(path, (1_700_000_000, 1_700_000_000))  # File.lastModified: 1700000000000
    device_token = make_token("device", "alpha-1")
    tus = {"Authorization": f"Bearer {device_token}", "Tus-Resumable": "1.0.0"}
    name = base64.b64encode(b"resumed.bin").decode()
    with httpx.Client(base_url=server.url, headers=tus) as device:
        created = device.post(
            "/api/devices/alpha-1/resumable",
            headers={"Upload-Length": str(len(data)), "Upload-Metadata": f"filename {name}"},
        )
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        first = device.patch(
            location,
            content=data[: 4 * 1024 * 1024],
            headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        )
        assert first.status_code == 204, first.text

    sign_in(browser, server.url, OPERATOR)
    wait(browser, lambda d: visible(d, "fleet-view"), "the fleet page")
    open_device(browser, server.url, "alpha-1")
    key = f"mindproject.tus:alpha-1:resumed.bin:{len(data)}:1700000000000"
    browser.execute_script("sessionStorage.setItem(arguments[0], arguments[1])", key, location)
    assert visible(browser, "device-token-field")
    by_id(browser, "file-input").send_keys(str(path))
    by_id(browser, "upload-button").click()
    wait(browser, lambda d: "paste it above" in by_id(d, "upload-status").text, "the token hint")
    by_id(browser, "device-token-input").send_keys(device_token)
    by_id(browser, "upload-button").click()
    wait(browser, lambda d: "Uploaded resumed.bin" in by_id(d, "upload-status").text, "the upload")
    with httpx.Client(base_url=server.url, headers=tus) as device:
        state = device.head(location)
        assert state.headers["upload-offset"] == str(len(data))  # this very upload completed
        latest = device.get("/api/devices/alpha-1/uploads?limit=1").json()["uploads"][0]
    assert (latest["filename"], latest["sha256"]) == (
        "resumed.bin",
        hashlib.sha256(data).hexdigest(),
    )
    assert browser.execute_script("return sessionStorage.getItem(arguments[0])", key) is None


def test_upload_20_mib_with_progress_to_100_percent(site, browser, tmp_path) -> None:
    server, _ = site
    data = os.urandom(20 * 1024 * 1024)
    path = tmp_path / "twenty.bin"
    path.write_bytes(data)
    sign_in(browser, server.url, ADMIN)
    wait(browser, lambda d: visible(d, "fleet-view"), "the fleet page")
    open_device(browser, server.url, "alpha-2")
    by_id(browser, "file-input").send_keys(str(path))
    by_id(browser, "upload-button").click()
    wait(browser, lambda d: "Uploaded twenty.bin" in by_id(d, "upload-status").text, "the upload")
    assert by_id(browser, "upload-progress").get_attribute("value") == "100"
    assert by_id(browser, "upload-percent").text == "100 %"
    newest = wait(
        browser,
        lambda d: [
            row
            for row in d.find_elements(By.CSS_SELECTOR, "#upload-rows tr[data-version]")
            if "twenty.bin" in row.text
        ],
        "the new version in the list",
    )[0]
    assert newest == browser.find_elements(By.CSS_SELECTOR, "#upload-rows tr[data-version]")[0]
    assert newest.find_elements(By.TAG_NAME, "td")[4].text == hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        latest = client.get("/api/devices/alpha-2/uploads?limit=1").json()["uploads"][0]
    assert latest["size"] == len(data) and latest["sha256"] == hashlib.sha256(data).hexdigest()


def test_revoke_and_unrevoke(site, browser) -> None:
    server, _ = site
    open_device(browser, server.url, "to-revoke")
    button = by_id(browser, "revoke-button")
    wait(browser, lambda d: button.text == "Revoke tokens", "the revoke button")
    button.click()
    wait(browser, lambda d: by_id(d, "device-status").text.startswith("Revoked"), "revoked")
    with server.client(ADMIN) as client:
        revoked = [r["device_id"] for r in client.get("/api/revocations/").json()["revocations"]]
    assert revoked == ["to-revoke"]
    wait(browser, lambda d: button.text == "Unrevoke tokens", "the unrevoke button")
    button.click()
    wait(browser, lambda d: not by_id(d, "device-status").text.startswith("Revoked"), "unrevoked")
    with server.client(ADMIN) as client:
        assert client.get("/api/revocations/").json()["revocations"] == []


def test_delete_as_admin_after_a_confirmation_naming_the_device(site, browser) -> None:
    server, _ = site
    open_device(browser, server.url, "to-delete")
    by_id(browser, "delete-button").click()
    wait(browser, lambda d: by_id(d, "confirm-dialog").is_displayed(), "the confirmation")
    assert "to-delete" in by_id(browser, "confirm-title").text
    assert not by_id(browser, "confirm-ok").is_enabled()
    by_id(browser, "confirm-input").send_keys("to-delete")
    by_id(browser, "confirm-ok").click()
    wait(browser, lambda d: "Deleted 1 upload of to-delete" in by_id(d, "notice").text, "done")
    wait(browser, lambda d: "to-delete" not in table_devices(d) and table_devices(d), "the table")
    with server.client(ADMIN) as client:
        assert client.get("/api/devices/to-delete/uploads").status_code == 404


def test_sign_out_clears_the_token(site, browser) -> None:
    by_id(browser, "sign-out").click()
    wait(browser, lambda d: visible(d, "signin-view"), "the sign-in form")
    assert browser.execute_script("return sessionStorage.length") == 0


def test_no_content_security_policy_violations(site, browser, console) -> None:
    console.extend(browser.get_log("browser"))
    violations = [
        entry
        for entry in console
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]
    assert violations == []
    errors = [
        entry
        for entry in console
        if entry["level"] == "SEVERE"
        # The device-token refusal and the confirmation's 404 check are expected answers.
        and " 401 " not in entry["message"]
        and " 403 " not in entry["message"]
        and " 404 " not in entry["message"]
    ]
    assert errors == []
