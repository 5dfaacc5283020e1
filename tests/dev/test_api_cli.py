"""Tilt's CLI verbs (`flotilla dev get|describe|wait|logs|trigger|enable|disable|args`) against
the JSON API of a running engine (local resources only: no cluster, no dockerd)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flotilla.cli import app
from flotilla.dev.runtime.engine import Engine, EngineConfig
from flotilla.dev.ui import UIServer

TILTFILE = """
config.define_string('greeting')
cfg = config.parse()
local_resource('hello', 'echo ' + cfg.get('greeting', 'hi'))
local_resource('later', 'echo later', auto_init=False)
v1alpha1.ui_button(name='shout', text='Shout',
                   location={'component_type': 'Resource', 'component_id': 'hello'})
v1alpha1.cmd(name='btn-shout', args=['sh', '-c', 'echo SHOUT $WHO'], env=['WHO=me'],
             start_on=v1alpha1.start_on_spec(ui_buttons=['shout']))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Engine, int]]:
    (tmp_path / "Tiltfile").write_text(TILTFILE)
    eng = Engine(EngineConfig(tiltfile=tmp_path / "Tiltfile", watch=False))
    eng.load()
    eng.start()
    port = free_port()
    server = UIServer(eng, port=port)
    server.start()
    try:
        yield eng, port
    finally:
        server.stop()
        eng.stop()


def dev(port: int, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["dev", args[0], "--port", str(port), *args[1:]])
    return result.exit_code, result.stdout + result.stderr


def test_get_describe_wait_logs(running: tuple[Engine, int]) -> None:
    _, port = running
    code, out = dev(port, "wait", "hello", "--timeout", "20")
    assert code == 0 and out.strip() == "ready: hello"
    code, out = dev(port, "get")
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:]}
    assert code == 0 and rows["hello"] == "ready" and rows["later"] == "disabled"
    code, out = dev(port, "describe", "hello")
    assert code == 0 and json.loads(out)["status"] == "ready"
    code, out = dev(port, "logs", "hello")
    assert code == 0 and "hi" in out.splitlines()
    code, out = dev(port, "describe", "nope")
    assert code == 1 and "no resource nope" in out


def test_enable_disable_trigger_and_buttons(running: tuple[Engine, int]) -> None:
    eng, port = running
    assert dev(port, "enable", "later")[0] == 0
    until(lambda: eng.states["later"].status == "ready")
    assert dev(port, "disable", "later")[0] == 0
    assert eng.states["later"].status == "disabled"
    eng.changed({str(eng.tiltfile.parent / "x")})  # a disabled resource ignores changes
    assert eng.states["later"].status == "disabled"
    assert dev(port, "trigger", "hello") == (0, "triggered hello\n")
    import httpx

    assert httpx.get(f"http://127.0.0.1:{port}/api/buttons").json()["buttons"][0]["name"] == "shout"
    assert httpx.post(f"http://127.0.0.1:{port}/api/buttons/shout").status_code == 200
    until(lambda: "SHOUT me" in eng.states["hello"].log)


def test_args_reload_the_tiltfile(running: tuple[Engine, int]) -> None:
    eng, port = running
    until(lambda: eng.states["hello"].status == "ready")
    code, out = dev(port, "args", "--", "--greeting", "bonjour")
    assert code == 0 and out.strip() == "args: --greeting bonjour"
    assert eng.cfg.args == ["--greeting", "bonjour"]
    until(lambda: "bonjour" in eng.states["hello"].log)
    assert dev(port, "args")[1].strip() == "--greeting bonjour"


def test_no_running_up_is_a_clear_error() -> None:
    code, out = dev(free_port(), "get")
    assert code == 1 and "no `flotilla dev up` answering" in out


def test_page_has_enable_disable_and_ui_buttons(running: tuple[Engine, int]) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.dev.test_ui import CHROMIUM_ARGS

    eng, port = running
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            later = page.locator('[data-testid=resource][data-name="later"]')
            expect(later).to_have_attribute("data-status", "disabled")
            later.get_by_test_id("enable").click()
            expect(later).to_have_attribute("data-status", "ready", timeout=10000)
            later.get_by_test_id("disable").click()
            expect(later).to_have_attribute("data-status", "disabled", timeout=10000)
            hello = page.locator('[data-testid=resource][data-name="hello"]')
            expect(hello.get_by_test_id("uibutton")).to_have_text("Shout")
            hello.get_by_test_id("uibutton").click()
            until(lambda: "SHOUT me" in eng.states["hello"].log)
        finally:
            browser.close()
