"""The dashboard answers an operator's questions, in Chromium: reasons, the rollout at a glance,
a 390 px phone, WCAG AA contrast computed from the browser's own styles, keyboard reachability.

Screenshots are kept as artifacts in ``out/screenshots/`` (ignored by git); each test prints
where it wrote them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.server.fleetspec import group_id
from tests.updates.conftest import ADMIN, Server, apply_doc, fleet
from tests.updates.test_dashboard_browser import SHOTS, browser, log_in
from tests.updates.test_reasons import SCENARIO_GROUPS, machine, run_scenario

pytestmark = pytest.mark.slow

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared with the other browser tests

APP = f"/ui/apps/{FLATCAR_APP_ID}"
CANARY = f"{APP}/groups/{group_id(FLATCAR_APP_ID, 'canary')}"
PRODUCTION = f"{APP}/groups/{group_id(FLATCAR_APP_ID, 'production')}"
PHONE = {"width": 390, "height": 844}
JS = Path(__file__).parent / "browser_js"


def browser_js(name: str) -> str:
    """A function from ``browser_js/`` for ``page.evaluate`` (its leading comments dropped)."""
    lines = (JS / name).read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("//"))


@pytest.fixture
def server(sqlite_url: str, serve: Callable[..., Server]) -> Server:
    """Four groups, each holding machines back for another reason (see test_reasons)."""
    apply_doc(sqlite_url, fleet(*SCENARIO_GROUPS))
    s = serve(sqlite_url, sample_interval=1, config_ttl=0)

    def post(body: bytes) -> None:
        assert s.omaha(body).status_code == 200

    run_scenario(post)
    return s


def new_page(browser: Browser, viewport: dict[str, int]) -> Iterator[Page]:
    ctx = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    p = ctx.new_page()
    p.set_default_timeout(15_000)
    try:
        yield p
    finally:
        ctx.close()


@pytest.fixture
def desk(browser: Browser) -> Iterator[Page]:
    yield from new_page(browser, {"width": 1300, "height": 900})


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    yield from new_page(browser, PHONE)


def shot(page: Page, name: str, full: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    print(f"screenshot: {path}")


def key_pages(server: Server) -> list[tuple[str, str]]:
    inst = f"{APP}/instances/{machine('canary', 0)}"
    return [
        ("apps", "/"),
        ("app", APP),
        ("group-canary", CANARY),
        ("group-production", PRODUCTION),
        ("instances", CANARY + "/instances"),
        ("instance", inst),
        ("activity", "/ui/activity"),
        ("reboots", "/ui/reboots"),
    ]


def test_reasons_and_the_rollout_at_a_glance(desk: Page, server: Server) -> None:
    log_in(desk, server, ADMIN)
    desk.goto(server.url + APP)
    prod = desk.locator(f'#glance tr[data-group="{group_id(FLATCAR_APP_ID, "production")}"]')
    expect(prod.locator("td").nth(1)).to_have_text("3760.2.0")
    expect(prod.locator("td").nth(2)).to_contain_text("0.0% (0/6)")
    expect(prod.locator("td").nth(3)).to_have_text("24.0/h")
    expect(prod.locator("td").nth(4)).to_have_text("~15m at 24/h")
    expect(prod.locator("td.why")).to_contain_text(
        re.compile(r"rate limit 4/1m, next slot \d\d:\d\d UTC")
    )
    canary = desk.locator(f'#glance tr[data-group="{group_id(FLATCAR_APP_ID, "canary")}"]')
    expect(canary.locator("td.why")).to_have_text("group halted: 2 failures")
    expect(canary.locator("td").nth(4)).to_have_text("stopped")
    shot(desk, "ux-app")

    desk.goto(server.url + CANARY)
    expect(desk.locator("#halted")).to_contain_text("3760.2.0 is halted: 2 failures.")
    expect(desk.locator("#reason-breakdown tr[data-kind=rolloutHalted]")).to_contain_text("4")
    expect(desk.locator("#reason-breakdown tr[data-kind=failed]")).to_contain_text(
        "payload hash mismatch (10)"
    )
    expect(desk.locator("#percent")).to_have_text("0.0%")
    # The banner's link leads to the Resume button.
    desk.click("#halted a")
    expect(desk.locator("#resume")).to_be_visible()
    shot(desk, "ux-group-halted")

    desk.goto(server.url + f"{APP}/groups/{group_id(FLATCAR_APP_ID, 'half')}/instances")
    outside = desk.locator("#instances td.reason").filter(has_text="outside rollout 50%")
    expect(outside).not_to_have_count(0)
    desk.goto(server.url + f"{APP}/instances/{machine('canary', 0)}")
    expect(desk.locator("#reason")).to_have_text(
        "update to 3760.2.0 failed: payload hash mismatch (10)"
    )
    expect(desk.locator("#last-error")).to_have_text("payload hash mismatch (10)")

    # The rollout chart keeps its history when the halted group is resumed.
    desk.goto(server.url + CANARY)
    progress = "Chart.getChart(document.getElementById('progress-chart'))"
    desk.wait_for_function(
        f"() => window.Chart && {progress} && {progress}.data.datasets[0].data.length > 2",
        timeout=20_000,
    )
    first = desk.evaluate(f"() => {progress}.data.datasets[0].data[0].x")
    desk.click("#resume")
    expect(desk.locator(".flash")).to_have_text("Updates resumed.")
    desk.wait_for_function(
        "() => window.Chart && Chart.getChart(document.getElementById('progress-chart'))"
    )
    after = desk.evaluate(f"() => {progress}.data.datasets[0].data[0].x")
    assert after <= first  # the chart still starts where the rollout began
    # The period picker changes the span, and the x axis is time.
    desk.click(".periods >> text=1h")
    expect(desk).to_have_url(re.compile(r"period=1h"))
    expect(desk.locator(".periods a.on")).to_have_text("1h")
    axis = desk.evaluate(f"() => {progress}.options.scales.x.type")
    assert axis == "linear"
    desk.wait_for_function("() => Chart.getChart(document.getElementById('versions-time-chart'))")
    desk.goto(server.url + PRODUCTION)
    desk.wait_for_function("() => Chart.getChart(document.getElementById('versions-chart'))")
    shot(desk, "ux-group-production")
    shot(desk, "ux-group-production-viewport", full=False)  # the size of docs/dashboard.png


# --- phone: 390 px, no horizontal scroll, every control reachable ----------------------------

_OVERFLOW_JS = browser_js("overflow.js")

_COVERED_JS = browser_js("covered.js")


def test_phone_layout(phone: Page, server: Server) -> None:
    log_in(phone, server, ADMIN)
    for name, path in key_pages(server):
        phone.goto(server.url + path)
        m: dict[str, Any] = phone.evaluate(_OVERFLOW_JS)
        assert m["scroll"] <= PHONE["width"], f"{name}: page is {m['scroll']} px wide"
        assert not m["bad"], f"{name}: controls off-screen: {m['bad']}"
        # Log out stays on screen (and is not hidden under anything).
        assert phone.locator("button.link").evaluate(_COVERED_JS), name
        shot(phone, f"ux-phone-{name}")
    # Every control of the policy form and the Save button can be reached and used.
    phone.goto(server.url + PRODUCTION)
    for sel in ("#f-max_updates_per_period", "#f-rollout_percent", "#f-timezone", "#save-policy",
                "#pause", "input[name=safe_mode]"):  # fmt: skip
        assert phone.locator(sel).evaluate(_COVERED_JS), f"{sel} is covered"
    phone.fill("#f-max_updates_per_period", "5")
    phone.click("#save-policy")
    expect(phone.locator(".flash")).to_have_text("Policy saved.")
    phone.click("button.link")
    expect(phone).to_have_url(re.compile(r"/ui/login"))


# --- contrast: WCAG AA, computed from the browser's styles ----------------------------------

_CONTRAST_JS = browser_js("contrast.js")


def test_contrast_meets_wcag_aa(desk: Page, server: Server) -> None:
    log_in(desk, server, ADMIN)
    failures: list[str] = []
    for name, path in key_pages(server):
        desk.goto(server.url + path)
        failures += [f"{name}: {f}" for f in desk.evaluate(_CONTRAST_JS)]
    # The key numbers the issue named: OnHold and Complete counts on the group page.
    desk.goto(server.url + PRODUCTION)
    for k in ("OnHold", "Complete", "Error"):
        color = desk.locator(f"#live [data-k={k}]").evaluate("e => getComputedStyle(e).color")
        assert color not in ("rgb(217, 162, 58)", "rgb(46, 158, 91)"), k  # the old 1.99:1 / 2.9:1
    assert not failures, "\n".join(failures)


def test_keyboard_reaches_every_control(desk: Page, server: Server) -> None:
    log_in(desk, server, ADMIN)
    desk.goto(server.url + PRODUCTION)
    reached: list[str] = []
    for _ in range(80):
        desk.keyboard.press("Tab")
        reached.append(
            desk.evaluate(
                "() => { const e = document.activeElement;"
                " return e.id || e.name || e.getAttribute('href') || e.textContent.trim(); }"
            )
        )
    for want in ("pause", "save-policy", "f-max_updates_per_period", "instances-link", "Log out"):
        assert want in reached, f"{want} not reachable by Tab: {reached}"
    assert any(r.startswith("?period=") for r in reached)
    # A focused control shows where it is.
    desk.focus("#save-policy")
    outline = desk.locator("#save-policy").evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline != "none"
    desk.goto(server.url + APP)
    reached = []
    for _ in range(60):
        desk.keyboard.press("Tab")
        reached.append(
            desk.evaluate("() => document.activeElement.getAttribute('aria-label') || ''")
        )
    assert "version for stable" in reached
