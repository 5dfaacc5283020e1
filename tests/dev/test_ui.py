"""The web UI: JSON API with starlette's TestClient, and the page in headless Chromium."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect, sync_playwright

from flotilla.dev.runtime.engine import TILTFILE, Engine, EngineConfig
from flotilla.dev.ui import UIServer, create_app

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    (tmp_path / "Tiltfile").write_text("""
local_resource('api-gen', 'echo generating api', labels=['backend'])
local_resource('broken', 'echo about to fail; exit 3', labels=['backend'])
local_resource('deploy', 'echo deployed $N', env={'N': '1'}, trigger_mode=TRIGGER_MODE_MANUAL,
               auto_init=False, labels=['ops'], links=[link('http://127.0.0.1:1/', 'docs')])
local_resource('plain', 'echo plain')
""")
    eng = Engine(EngineConfig(tiltfile=tmp_path / "Tiltfile", watch=False))
    eng.load()
    eng.start()
    deadline = time.monotonic() + 20
    while eng.states["broken"].status != "error" or eng.states["api-gen"].status != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield eng
    finally:
        eng.stop()


def test_api_lists_resources_logs_and_triggers(engine: Engine) -> None:
    client = TestClient(create_app(engine))
    with client:
        body = client.get("/api/resources").json()
        by_name = {r["name"]: r for r in body["resources"]}
        assert next(iter(by_name)) == TILTFILE
        assert by_name["broken"]["status"] == "error"
        assert by_name["broken"]["error"] == "cmd exited with code 3"
        assert by_name["api-gen"]["labels"] == ["backend"]
        assert by_name["deploy"]["status"] == "disabled"
        logs = client.get("/api/logs/broken").json()
        assert "about to fail" in logs["lines"] and logs["next"] == len(logs["lines"])
        assert client.get(f"/api/logs/broken?since={logs['next']}").json()["lines"] == []
        assert client.post("/api/trigger/nope").status_code == 404
        assert client.post("/api/trigger/deploy").json() == {"triggered": "deploy"}
        deadline = time.monotonic() + 10
        while engine.states["deploy"].status != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "deployed 1" in client.get("/api/logs/deploy").json()["lines"]


def test_page_in_headless_chromium(engine: Engine) -> None:
    ui = UIServer(engine, "127.0.0.1", free_port())
    ui.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(ui.url)
                groups = page.get_by_test_id("group")
                expect(groups).to_have_count(3)  # backend, ops, unlabeled (last)
                expect(groups.nth(0)).to_have_attribute("data-label", "backend")
                expect(groups.nth(2)).to_have_attribute("data-label", "unlabeled")
                broken = page.locator('[data-testid=resource][data-name="broken"]')
                expect(broken).to_have_attribute("data-status", "error")
                expect(broken.get_by_test_id("error")).to_have_text("cmd exited with code 3")
                broken.click()
                expect(page.get_by_test_id("log-title")).to_have_text("broken")
                expect(page.get_by_test_id("log")).to_contain_text("about to fail")
                deploy = page.locator('[data-testid=resource][data-name="deploy"]')
                expect(deploy).to_have_attribute("data-status", "disabled")
                expect(deploy.locator("a")).to_have_attribute("href", "http://127.0.0.1:1/")
                deploy.get_by_test_id("trigger").click()
                expect(deploy).to_have_attribute("data-status", "ready", timeout=10000)
                expect(deploy.get_by_test_id("last-build")).to_contain_text("last: run")
                deploy.click()
                expect(page.get_by_test_id("log")).to_contain_text("deployed 1")
                page.screenshot(path=str(Path(engine.tiltfile).parent / "ui.png"))
            finally:
                browser.close()
    finally:
        ui.stop()
