"""The dashboard in a real browser: Playwright driving Debian's headless Chromium on loopback.

Screenshots go to ``out/screenshots/`` (ignored by git) as artifacts of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.server.fleetspec import group_id
from tests.updates.conftest import ADMIN, READER, Server, apply_doc, fleet, ue_request

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).parents[2] / "out" / "screenshots"
GID = group_id(FLATCAR_APP_ID, "stable")
GROUP = f"/ui/apps/{FLATCAR_APP_ID}/groups/{GID}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: run scripts/bootstrap.sh (Debian package chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def server(sqlite_url: str, serve: Callable[..., Server]) -> Server:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url, sample_interval=1, config_ttl=0)
    for i in range(6):
        assert s.omaha(ue_request(f"{i:032x}")).status_code == 200
    return s


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1100})
    p = ctx.new_page()
    p.set_default_timeout(15_000)
    try:
        yield p
    finally:
        ctx.close()


def log_in(page: Page, server: Server, token: str) -> None:
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/ui/login?next=/")
    page.fill("#token", token)
    page.click("#login")
    expect(page.locator("h1")).to_have_text("Applications")


def test_admin_watches_a_rollout_and_changes_the_policy(page: Page, server: Server) -> None:
    log_in(page, server, ADMIN)
    expect(page.locator("#role")).to_have_text("admin")
    page.click("text=Flatcar")
    page.click(f'a[href$="/groups/{GID}"]')
    expect(page.locator("#live [data-k=UpdateGranted]")).to_have_text("6")
    # The charts drew with data (Chart.js fetched from npm by scripts/dashboard-assets.sh).
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.getElementById('versions-chart'))"
        " && Chart.getChart(document.getElementById('progress-chart'))"
        ".data.datasets[0].data.length > 0"
    )

    # The rollout moves on without a reload: machines report downloads and completions.
    for i in range(3):
        server.omaha(ue_request(f"{i:032x}", check=False, event=(13, 1)))
    server.omaha(ue_request(f"{5:032x}", check=False, event=(3, 0), errorcode=2004))
    expect(page.locator("#live [data-k=Downloading]")).to_have_text("3", timeout=20_000)
    expect(page.locator("#live [data-k=Error]")).to_have_text("1")
    page.wait_for_function(
        "() => { const c = Chart.getChart(document.getElementById('progress-chart'));"
        " const d = c.data.datasets.find(s => s.label === 'Downloading').data;"
        " return d[d.length - 1].y === 3; }"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard-group.png"), full_page=True)

    # A bad value is refused with the error beside its field, and nothing is saved.
    page.fill("#f-max_updates_per_period", "lots")
    page.click("#save-policy")
    expect(page.locator("#err-max_updates_per_period")).to_contain_text("whole number")
    expect(page.locator("#f-max_updates_per_period")).to_have_value("lots")
    # A good value is saved.
    page.fill("#f-max_updates_per_period", "7")
    page.click("#save-policy")
    expect(page.locator(".flash")).to_have_text("Policy saved.")
    expect(page.locator("#f-max_updates_per_period")).to_have_value("7")

    page.click("#pause")
    expect(page.locator(".flash")).to_have_text("Updates paused.")
    page.click("text=Activity")
    expect(page.locator("#activity")).to_contain_text("GroupPaused")
    expect(page.locator("#activity")).to_contain_text("PolicyUpdated")
    # New entries arrive on the open feed without a reload.
    server.client.post(f"{GROUP}/resume", headers=server.admin())
    expect(page.locator("#activity tbody tr.new")).to_contain_text("updates resumed")
    page.screenshot(path=str(SHOTS / "dashboard-activity.png"))


def test_read_only_sees_but_cannot_act(page: Page, server: Server) -> None:
    log_in(page, server, READER)
    expect(page.locator("#role")).to_have_text("read-only")
    page.goto(server.url + GROUP)
    expect(page.locator("#f-max_updates_per_period")).to_be_disabled()
    expect(page.locator("#save-policy")).to_be_disabled()
    expect(page.locator("#pause")).to_have_count(0)
    expect(page.locator("text=Read-only").first).to_be_visible()
    # Even a hand-made POST with the session's own CSRF value is refused.
    status = page.evaluate(
        """async () => {
            const csrf = document.querySelector('input[name=csrf]').value;
            const r = await fetch(location.pathname + '/pause', {method: 'POST',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                body: 'csrf=' + encodeURIComponent(csrf)});
            return r.status;
        }"""
    )
    assert status == 403
    groups = server.client.get(f"/api/v1/apps/{FLATCAR_APP_ID}/groups", headers=server.reader())
    assert all(g["policy"]["updates_enabled"] for g in groups.json())
