"""The update agent: pure scheduling and state, the wire format, slots, and hostile answers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flotilla.updates.models import FLATCAR_APP_ID, Package
from flotilla.updates.node import slots
from flotilla.updates.node.agent import (
    Agent,
    AgentSettings,
    AgentState,
    Pending,
    Schedule,
    TransientError,
    after_boot,
    fuzzed,
    merge_confs,
    next_delay,
    parse_update_conf,
)
from flotilla.updates.node.omaha_client import (
    ERROR_PAYLOAD_HASH_MISMATCH,
    ERROR_PAYLOAD_SIZE_MISMATCH,
    ClientEvent,
    Identity,
    ResponseError,
    build_request,
    parse_response,
)
from flotilla.updates.server.omaha import AppResponse, parse_request, render_response

from .conftest import Server, apply_doc, fleet

OLD, NEW = "3510.2.0", "3760.2.0"

# --- pure ------------------------------------------------------------------------------------


def test_update_conf_like_flatcar() -> None:
    text = '# comment\nSERVER=http://u:8000/v1/update/\nGROUP="beta"  # trailing\n\nBAD LINE\n'
    assert parse_update_conf(text) == {"SERVER": "http://u:8000/v1/update/", "GROUP": "beta"}
    merged = merge_confs("GROUP=canary\n", "GROUP=stable\nSERVER=x\n", "FLATCAR_RELEASE_VERSION=1")
    assert merged == {"GROUP": "canary", "SERVER": "x", "FLATCAR_RELEASE_VERSION": "1"}


@given(st.floats(0, 0.999999))
def test_default_interval_is_45_minutes_plus_minus_5(u: float) -> None:
    d = next_delay(Schedule(), 0, None, u)
    assert 40 * 60 <= d <= 50 * 60


@given(st.integers(0, 40), st.floats(0, 0.999999))
def test_backoff_doubles_up_to_4_hours(failures: int, u: float) -> None:
    s = Schedule()
    d = next_delay(s, failures, None, u)
    assert d <= s.max_backoff + s.fuzz / 2
    if failures:
        assert d >= min(s.max_backoff, s.interval * 2**failures - s.fuzz / 2)


def test_poll_interval_is_honoured() -> None:
    assert next_delay(Schedule(fuzz=0), 0, 300, 0.5) == 300
    assert next_delay(Schedule(fuzz=0), 1, 300, 0.5) == 600
    assert fuzzed(10, 100, 0.0) == 0.0


def test_reboot_switches_to_the_staged_slot_only_on_a_new_boot() -> None:
    state = AgentState(OLD, "A", "boot-1", Pending(NEW, "B", "boot-1", OLD))
    assert after_boot(state, "boot-1") == state
    rebooted = after_boot(state, "boot-2")
    assert (rebooted.version, rebooted.active_slot, rebooted.pending) == (NEW, "B", None)
    assert rebooted.report_previous == OLD
    plain = after_boot(AgentState(OLD, "A", "boot-1"), "boot-2")
    assert (plain.version, plain.active_slot, plain.report_previous) == (OLD, "A", None)
    assert AgentState.from_json(rebooted.to_json()) == rebooted


def test_slot_choice() -> None:
    assert slots.inactive("A") == "B"
    assert slots.inactive("B") == "A"
    assert slots.inactive("garbage") == "B"


# --- wire format -------------------------------------------------------------------------------


def test_request_reads_as_update_engine_to_the_server() -> None:
    ident = Identity(
        machine_id="abce671d61774703ac7be60715220bfe",
        version=OLD,
        track="beta",
        boot_id="965fb4c5-ad3e",
        machine_alias="web-1",
        oem="qemu",
    )
    body = build_request(ident, events=(ClientEvent(3, 2, previous_version="3400.0.0"),))
    text = body.decode()
    for attr in (
        'protocol="3.0"',
        'updaterversion="update_engine-0.4.10"',
        'ismachine="1"',
        'installsource="scheduler"',
        'platform="CoreOS"',
        f'sp="{OLD}_x86_64"',
        'appid="{' + FLATCAR_APP_ID + '}"',
        'machinealias="web-1"',
        'lang="en-US"',
        'board="amd64-usr"',
        'delta_okay="false"',
        '<ping active="1"',
        "<updatecheck",
        'previousversion="3400.0.0"',
    ):
        assert attr in text, attr
    req = parse_request(body)
    app = req.apps[0]
    assert (app.track, app.version, app.machine_alias, app.update_check, app.ping) == (
        "beta",
        OLD,
        "web-1",
        True,
        True,
    )
    assert app.events[0].previous_version == "3400.0.0"
    event_only = parse_request(
        build_request(ident, update_check=False, events=(ClientEvent(13, 1),))
    ).apps[0]
    assert not event_only.update_check and not event_only.ping
    ping_only = parse_request(build_request(ident, update_check=False)).apps[0]
    assert ping_only.ping and not ping_only.update_check


def _pkg(size: int = 5, sha: str = "ab" * 32) -> Package:
    return Package(FLATCAR_APP_ID, NEW, "amd64", "http://dl/x", "p.gz", size, sha)


def test_response_from_the_server_parses() -> None:
    body = render_response(
        [AppResponse("{" + FLATCAR_APP_ID + "}", update_check=True, package=_pkg())]
    )
    ans = parse_response(body)
    assert ans.update is not None
    assert ans.update.payload_urls() == ("http://dl/x/p.gz",)
    assert (ans.update.version, ans.update.size, ans.update.sha256_hex) == (NEW, 5, "ab" * 32)
    none = parse_response(render_response([AppResponse(FLATCAR_APP_ID, update_check=True)]))
    assert none.update is None


@pytest.mark.parametrize(
    "body",
    [
        b"<response><app appid='x'/></response>",
        b"not xml",
        b'<!DOCTYPE r [<!ENTITY a "b">]><response/>',
        f"<response><app appid='{FLATCAR_APP_ID}'><updatecheck status='error-internal'/>"
        "</app></response>".encode(),
        f"<response><app appid='{FLATCAR_APP_ID}'><updatecheck status='ok'><urls><url "
        "codebase='http://a/'/></urls><manifest version='1.2.3'><packages><package name='p' "
        "size='3'/></packages></manifest></updatecheck></app></response>".encode(),
        f"<response><app appid='{FLATCAR_APP_ID}'><updatecheck status='ok'><urls><url "
        "codebase='http://a/'/></urls><manifest version='1.2.3'><packages><package "
        "name='../etc/x' size='3'/></packages><actions><action event='postinstall' "
        f"sha256='{base64.b64encode(bytes(32)).decode()}'/></actions></manifest></updatecheck>"
        "</app></response>".encode(),
    ],
    ids=["other-app", "garbage", "dtd", "error-status", "no-sha256", "path-in-name"],
)
def test_answers_update_engine_refuses(body: bytes) -> None:
    with pytest.raises(ResponseError):
        parse_response(body)


def test_poll_interval_is_read() -> None:
    body = (
        f"<response><app appid='{FLATCAR_APP_ID}'><updatecheck status='noupdate' "
        "PollInterval='600'/></app></response>"
    ).encode()
    assert parse_response(body).poll_interval == 600


# --- slots -------------------------------------------------------------------------------------


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    backing = tmp_path / "disk.img"
    backing.write_bytes(b"\0" * 65536)
    dev = subprocess.run(
        ["losetup", "-f", "--show", str(backing)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        yield Path(dev)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@pytest.mark.parametrize("kind", ["file", "directory", "block"])
def test_slot_write_and_verify(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "block":
        path: Path = request.getfixturevalue("loop_device")
    elif kind == "directory":
        path = tmp_path / "usr-b"
        path.mkdir()
    else:
        path = tmp_path / "usr-b.img"
    slot = slots.Slot("B", path)
    assert slot.kind().value == kind
    data = b"flatcar" * 1000
    slots.write(slot, [data[:3000], data[3000:]], len(data))
    assert slots.verify(slot, len(data), hashlib.sha256(data).hexdigest())
    assert not slots.verify(slot, len(data), hashlib.sha256(b"other").hexdigest())
    assert not slots.verify(slot, len(data) + 1 << 20, hashlib.sha256(data).hexdigest())


def test_block_slot_refuses_a_payload_that_does_not_fit(loop_device: Path) -> None:
    with pytest.raises(slots.SlotError, match="does not fit"):
        slots.write(slots.Slot("A", loop_device), [b"x" * 70000], 70000)


# --- the agent against a scripted server --------------------------------------------------------


def _agent(tmp_path: Path, handler: Callable[[httpx.Request], httpx.Response]) -> Agent:
    if not (tmp_path / "boot").exists():
        (tmp_path / "boot").write_text("boot-1")
    settings = AgentSettings(
        server="http://omaha.test/v1/update/",
        state_dir=tmp_path / "state",
        slot_a=tmp_path / "a.img",
        slot_b=tmp_path / "b.img",
        identity=Identity(machine_id="m1", version=OLD),
        boot_id_file=tmp_path / "boot",
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return Agent(settings, client)


def _offer(payload_len: int, sha: str) -> bytes:
    pkg = Package(FLATCAR_APP_ID, NEW, "amd64", "http://dl.test/", "p.gz", payload_len, sha)
    return render_response([AppResponse(FLATCAR_APP_ID, update_check=True, package=pkg)])


def _server(payload: bytes, size: int, sha: str, log: list[bytes]) -> Callable[..., httpx.Response]:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.host == "dl.test":
            return httpx.Response(200, stream=httpx.ByteStream(payload))
        log.append(req.content)
        if b"<updatecheck" in req.content:
            return httpx.Response(200, content=_offer(size, sha))
        return httpx.Response(200, content=render_response([AppResponse(FLATCAR_APP_ID)]))

    return handler


@pytest.mark.parametrize(
    ("served", "code"),
    [
        (b"A" * 999, ERROR_PAYLOAD_SIZE_MISMATCH),
        (b"B" * 1000, ERROR_PAYLOAD_HASH_MISMATCH),
        (b"A" * 1001, ERROR_PAYLOAD_SIZE_MISMATCH),
    ],
    ids=["truncated", "corrupt", "too-long"],
)
def test_a_bad_payload_never_becomes_active(tmp_path: Path, served: bytes, code: int) -> None:
    log: list[bytes] = []
    good = b"A" * 1000
    agent = _agent(tmp_path, _server(served, 1000, hashlib.sha256(good).hexdigest(), log))
    asyncio.run(agent.check())
    seq = [(e.type, e.result, e.error_code) for e in agent.events_sent]
    assert seq == [(3, 2, None), (13, 1, None), (3, 0, code)] or seq == [
        (3, 2, None),
        (13, 1, None),
        (14, 1, None),
        (3, 0, code),
    ]
    assert agent.state.pending is None and agent.state.active_slot == "A"
    assert not agent.reboot_marker.exists()
    assert not (tmp_path / "b.img").exists()
    assert not (agent.settings.state_dir / "download.partial").exists()


def test_good_payload_then_ping_only_until_reboot(tmp_path: Path) -> None:
    log: list[bytes] = []
    good = b"A" * 1000
    agent = _agent(tmp_path, _server(good, 1000, hashlib.sha256(good).hexdigest(), log))
    asyncio.run(agent.check())
    assert agent.reboot_needed and agent.reboot_marker.read_text().strip() == NEW
    assert slots.verify(agent.slot("B"), 1000, hashlib.sha256(good).hexdigest())
    log.clear()
    asyncio.run(agent.check())
    assert len(log) == 1 and b"<updatecheck" not in log[0] and b"<ping" in log[0]
    (tmp_path / "boot").write_text("boot-2")
    # A fresh process (the machine rebooted) reads the state and reports 3/2.
    again = _agent(tmp_path, _server(good, 1000, "00" * 32, log))
    log.clear()
    asyncio.run(again.check())
    assert b'eventresult="2"' in log[0] and f'previousversion="{OLD}"'.encode() in log[0]
    assert f'version="{NEW}"'.encode() in log[0]
    assert again.state.active_slot == "B" and not again.reboot_marker.exists()


def _events(body: bytes) -> list[str]:
    """The ``<event .../>`` elements of a request, attributes in the order sent."""
    return re.findall(r"<event [^>]*>", body.decode())


def test_update_engine_event_sequence(tmp_path: Path) -> None:
    """update_engine's whole sequence with its exact attributes (omaha_request_action.cc,
    update_attempter.cc), plus 800/1 after postinstall so Nebraska records Installed."""
    log: list[bytes] = []
    good = b"A" * 1000
    agent = _agent(tmp_path, _server(good, 1000, hashlib.sha256(good).hexdigest(), log))
    asyncio.run(agent.check())
    check, *events = log
    # A fresh machine: the check carries 3/2 with previousversion 0.0.0.0 ("initial").
    assert b"<updatecheck" in check and b'<ping active="1"' in check
    assert _events(check) == ['<event eventtype="3" eventresult="2" previousversion="0.0.0.0">']
    assert [_events(b) for b in events] == [
        ['<event eventtype="13" eventresult="1">'],
        ['<event eventtype="14" eventresult="1">'],
        ['<event eventtype="3" eventresult="1">'],
        ['<event eventtype="800" eventresult="1">'],
    ]
    # Event reports are bare: no ping, no updatecheck.
    assert all(b"<ping" not in b and b"<updatecheck" not in b for b in events)
    log.clear()
    asyncio.run(agent.check())  # waiting for the reboot: ping only, no event
    assert len(log) == 1 and _events(log[0]) == [] and b"<updatecheck" not in log[0]
    (tmp_path / "boot").write_text("boot-2")
    rebooted = _agent(tmp_path, _server(good, 1000, "00" * 32, log))
    log.clear()
    asyncio.run(rebooted.check())
    assert _events(log[0]) == [f'<event eventtype="3" eventresult="2" previousversion="{OLD}">']
    log.clear()
    asyncio.run(rebooted.check())  # the pref is reset: every later check sends ""
    assert _events(log[0]) == ['<event eventtype="3" eventresult="2" previousversion="">']


def test_request_is_update_engines_text_byte_for_byte() -> None:
    ident = Identity(
        machine_id="abce671d61774703ac7be60715220bfe",
        version="3510.2.0",
        track="stable",
        boot_id="965fb4c5-ad3e-4eb7-a4c2-ca0c0e31ec84",
        oem="ami",
        oem_version="0.1.1-r1",
        aleph_version="1688.5.3",
    )
    ev = ClientEvent(3, 2, previous_version="")
    # GetRequestXml's text (omaha_request_action.cc), filled in for this machine.
    assert build_request(ident, events=(ev,)) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<request protocol="3.0" version="update_engine-0.4.10" '
        b'updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">\n'
        b'    <os version="Chateau" platform="CoreOS" sp="3510.2.0_x86_64"></os>\n'
        b'    <app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="3510.2.0" '
        b'track="stable" bootid="{965fb4c5-ad3e-4eb7-a4c2-ca0c0e31ec84}" oem="ami" '
        b'oemversion="0.1.1-r1" alephversion="1688.5.3" '
        b'machineid="abce671d61774703ac7be60715220bfe" machinealias="" lang="en-US" '
        b'board="amd64-usr" hardware_class="" delta_okay="false" >\n'
        b'        <ping active="1"></ping>\n'
        b"        <updatecheck></updatecheck>\n"
        b'        <event eventtype="3" eventresult="2" previousversion=""></event>\n'
        b"    </app>\n"
        b"</request>\n"
    )


def test_rollback_is_reported_as_error_44(tmp_path: Path) -> None:
    log: list[bytes] = []
    agent = _agent(tmp_path, _server(b"", 1, "00" * 32, log))
    agent._save(AgentState(version=OLD, boot_id="boot-1", report_previous=OLD))
    log.clear()
    asyncio.run(agent.check())  # the offered payload is too short: fails, irrelevant here
    assert _events(log[0]) == ['<event eventtype="3" eventresult="0" errorcode="44">']


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_back_off(tmp_path: Path, status: int) -> None:
    agent = _agent(tmp_path, lambda req: httpx.Response(status))
    with pytest.raises(TransientError):
        asyncio.run(agent.check())

    async def loop() -> None:
        stop = asyncio.Event()
        agent.settings = AgentSettings(
            **{**agent.settings.__dict__, "schedule": Schedule(0.01, 0, 0, 0.05)}
        )
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(0.3)
        stop.set()
        await task

    asyncio.run(loop())
    assert agent.failures >= 2


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    agent = _agent(tmp_path, refuse)
    with pytest.raises(TransientError):
        asyncio.run(agent.check())


def test_corrupt_state_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_text("{nope")
    with pytest.raises(SystemExit, match="corrupt agent state"):
        _agent(tmp_path, lambda r: httpx.Response(500))


def test_cli_reads_update_conf_and_checks_in_once(
    serve: Callable[..., Server], sqlite_url: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from flotilla.updates.cli import app
    from flotilla.updates.server import catalog
    from flotilla.updates.server.schema import make_engine

    apply_doc(sqlite_url, fleet(channel=OLD))
    server = serve(sqlite_url)
    conf = tmp_path / "update.conf"
    conf.write_text(f"SERVER={server.url}/v1/update/\nGROUP=stable\nMACHINE_ALIAS=web-7\n")
    release = tmp_path / "release"
    release.write_text(f"FLATCAR_RELEASE_VERSION={OLD}\nFLATCAR_RELEASE_BOARD=amd64-usr\n")
    (tmp_path / "boot").write_text("b1")
    args = [
        "agent",
        "--slot-a",
        str(tmp_path / "a"),
        "--slot-b",
        str(tmp_path / "b"),
        "--config",
        str(conf),
        "--release-file",
        str(release),
        "--machine-id",
        "cli0001",
        "--state-dir",
        str(tmp_path / "st"),
        "--boot-id-file",
        str(tmp_path / "boot"),
    ]
    result = CliRunner().invoke(app, [*args, "--once"])
    assert result.exit_code == 0, result.output
    engine = make_engine(sqlite_url, pool_size=1)
    inst = catalog.get_instance(engine, FLATCAR_APP_ID, "cli0001")
    engine.dispose()
    assert (inst["alias"], inst["version"], inst["group"]) == ("web-7", OLD, "stable")
    shown = CliRunner().invoke(app, [*args, "--status"])
    assert '"reboot_needed": false' in shown.output
    bad = CliRunner().invoke(app, [*args[:4], "--config", str(tmp_path / "none"), "--once"])
    assert bad.exit_code != 0
    for extra, flag in (
        (["--reboot-strategy", "fleetlock"], "--fleetlock-url"),
        (["--reboot-strategy", "sometimes"], "--reboot-strategy"),
    ):
        refused = CliRunner(env={"COLUMNS": "200"}).invoke(app, [*args, *extra, "--once"])
        assert refused.exit_code == 2 and flag in refused.output, refused.output


def test_fleetlock_strategy_reboots_one_at_a_time(
    serve: Callable[..., Server], sqlite_url: str, tmp_path: Path
) -> None:
    """Two agents, one FleetLock slot: the second reboots only after the first gave it back."""
    from flotilla.updates.server import fleetlock_store
    from flotilla.updates.server.schema import make_engine

    from .payloads import payload_server

    good = b"flatcar" * 5000
    with payload_server() as payloads:
        payloads.files["u.gz"] = good
        doc = fleet(channel=NEW)
        for p in doc["applications"][0]["packages"]:
            if p["version"] == NEW:
                p.update(
                    url=payloads.url,
                    filename="u.gz",
                    size=len(good),
                    sha256=hashlib.sha256(good).hexdigest(),
                )
        doc["fleetlock"] = {"groups": [{"name": "workers", "max_holders": 1}]}
        apply_doc(sqlite_url, doc)
        s = serve(sqlite_url)
        agents = []
        for i in (1, 2):
            root = tmp_path / f"m{i}"
            root.mkdir()
            (root / "boot").write_text("b0")
            agents.append(
                Agent(
                    AgentSettings(
                        server=f"{s.url}/v1/update/",
                        state_dir=root / "state",
                        slot_a=root / "a",
                        slot_b=root / "b",
                        identity=Identity(machine_id=f"lock{i}", version=OLD),
                        boot_id_file=root / "boot",
                        reboot_strategy="fleetlock",
                        reboot_command=("sh", "-c", f"echo b1 > {root / 'boot'}"),
                        fleetlock_url=s.url,
                        fleetlock_group="workers",
                    )
                )
            )
        engine = make_engine(sqlite_url, pool_size=1)

        def holders() -> list[str]:
            return [h["id"] for h in fleetlock_store.list_holders(engine, "workers")]

        async def rounds() -> None:
            for a in agents:
                await a.check()  # both stage the update
            assert all(a.reboot_needed for a in agents)
            await agents[0].check()  # takes the slot and "reboots"
            await agents[1].check()  # refused: stays staged, no reboot
            assert holders() == ["lock1"]
            assert (
                agents[1].settings.boot_id_file.read_text().strip(),
                agents[1].reboot_needed,
            ) == ("b0", True)
            await agents[0].check()  # back: gives the slot back, reports 3/2
            assert holders() == [] and agents[0].state.version == NEW
            await agents[1].check()
            assert holders() == ["lock2"]
            await agents[1].check()
            assert holders() == [] and agents[1].state.version == NEW

        asyncio.run(rounds())
        engine.dispose()
    assert all(not a.state.lock_held for a in agents)
