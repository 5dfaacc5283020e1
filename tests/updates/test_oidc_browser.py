"""Log in to the dashboard through a real OpenID Connect provider (ORY Hydra) in Chromium.

The whole way a person goes: the dashboard's login page, the provider (Hydra, with our login
page that asks for a user name), back to the dashboard with a session naming the person; an
admin's change lands in the activity feed under her name, a reader cannot change anything, and
someone without an allowed group is refused.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from flotilla.updates.server.api import create_app
from flotilla.updates.server.oidc import OidcSettings
from flotilla.updates.server.settings import ServerSettings
from tests.updates.conftest import ADMIN, READER, UvicornThread, apply_doc, fleet
from tests.updates.oidc_provider import Hydra
from tests.updates.test_dashboard_browser import GROUP, SHOTS, browser

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the module-scoped Chromium fixture of the dashboard browser tests
SECRET = "flotilla-browser-client-secret"


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile: no cookies, neither ours nor the provider's."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1100})
    p = ctx.new_page()
    p.set_default_timeout(15_000)
    try:
        yield p
    finally:
        ctx.close()


@pytest.fixture
def url(sqlite_url: str, hydra: Hydra) -> Iterator[str]:
    """A dashboard whose login goes through Hydra; its URL."""
    apply_doc(sqlite_url, fleet())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client_id = hydra.register_client(f"{base}/ui/oidc/callback", SECRET)
    settings = ServerSettings(
        db_url=sqlite_url,
        admin_tokens=(ADMIN,),
        read_tokens=(READER,),
        oidc=OidcSettings(
            issuer=hydra.issuer,
            client_id=client_id,
            client_secret=SECRET,
            redirect_url=f"{base}/ui/oidc/callback",
            admin_values=("fleet-admins",),
            read_values=("fleet-viewers",),
        ),
    )
    with UvicornThread(create_app(settings), sock=sock):
        yield base


def oidc_login(page: Page, url: str, user: str) -> None:
    """From the dashboard to the provider's login page and back."""
    page.goto(url + "/")
    expect(page).to_have_url(url + "/ui/login?next=/")
    page.click("#oidc-login")
    expect(page.locator("h1")).to_have_text("Test provider")  # Hydra sent us to its login page
    page.fill("#user", user)
    page.click("#sign-in")


def test_an_admin_logs_in_and_the_feed_names_her(tab: Page, url: str) -> None:
    oidc_login(tab, url, "alice")
    expect(tab.locator("h1")).to_have_text("Applications")
    expect(tab).to_have_url(url + "/")
    expect(tab.locator("#user")).to_have_text("alice")
    expect(tab.locator("#role")).to_have_text("admin")
    tab.goto(url + GROUP)
    tab.click("#pause")
    expect(tab.locator(".flash")).to_have_text("Updates paused.")
    expect(tab.locator("body")).to_contain_text("paused by alice at ")
    tab.click("text=Activity")
    expect(tab.locator("#activity")).to_contain_text("updates paused by alice")
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / "dashboard-oidc-activity.png"))
    # Logging out ends the session.
    tab.click("text=Log out")
    expect(tab).to_have_url(url + "/ui/login")
    tab.goto(url + GROUP)
    expect(tab).to_have_url(url + "/ui/login?next=" + GROUP)


def test_a_reader_looks_but_cannot_change(tab: Page, url: str) -> None:
    oidc_login(tab, url, "bob")
    expect(tab.locator("#user")).to_have_text("bob")
    expect(tab.locator("#role")).to_have_text("read-only")
    tab.goto(url + GROUP)
    expect(tab.locator("#pause")).to_have_count(0)
    status = tab.evaluate(
        """async () => {
            const csrf = document.querySelector('input[name=csrf]').value;
            const r = await fetch(location.pathname + '/pause', {method: 'POST',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                body: 'csrf=' + encodeURIComponent(csrf)});
            return r.status;
        }"""
    )
    assert status == 403
    tab.goto(url + "/ui/activity")
    expect(tab.locator("#activity")).not_to_contain_text("paused")


def test_someone_without_an_allowed_group_is_refused(tab: Page, url: str) -> None:
    oidc_login(tab, url, "mallory")
    expect(tab.locator("#login-error")).to_contain_text("mallory has no role here")
    tab.goto(url + "/")
    expect(tab).to_have_url(url + "/ui/login?next=/")
