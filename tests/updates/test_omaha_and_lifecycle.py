"""Pure Omaha parsing/rendering and the instance status machine."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flotilla.updates.models import Event, ExtraFile, InstanceState, InstanceStatus, Package
from flotilla.updates.server.lifecycle import apply_event, grant, hold, regrant_target
from flotilla.updates.server.omaha import (
    MAX_BODY,
    AppResponse,
    OmahaError,
    arch_of,
    parse_request,
    render_response,
)
from tests.updates.conftest import NEW, OLD, SHA, ue_request

# The verbatim request from flatcar/ue-rs (src/testdata/omaha-request-example.xml).
UE_RS_REQUEST = b"""<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" \
installsource="scheduler" ismachine="1">
  <os version="Chateau" platform="CoreOS" sp="2512.2.0_x86_64"></os>
  <app appid="e96281a6-d1af-4bde-9a0a-97b76e56dc57" version="1.2.3" track="alpha" \
bootid="{965fb4c5-ad3e-4eb7-a4c2-ca0c0e31ec84}" oem="ami" oemversion="0.1.1-r1" \
alephversion="1688.5.3" machineid="abce671d61774703ac7be60715220bfe" lang="en-US" \
board="amd64-usr" hardware_class="" delta_okay="false" >
    <ping active="1"></ping>
    <updatecheck></updatecheck>
    <event eventtype="3" eventresult="1"></event>
  </app>
</request>
"""


def test_parses_ue_rs_sample() -> None:
    req = parse_request(UE_RS_REQUEST)
    assert req.platform == "CoreOS"
    (app,) = req.apps
    assert app.app_id == "e96281a6-d1af-4bde-9a0a-97b76e56dc57"
    assert (app.version, app.track, app.machine_id) == (
        "1.2.3",
        "alpha",
        "abce671d61774703ac7be60715220bfe",
    )
    assert (app.oem, app.oem_version, app.aleph_version) == ("ami", "0.1.1-r1", "1688.5.3")
    assert app.boot_id == "965fb4c5-ad3e-4eb7-a4c2-ca0c0e31ec84"
    assert app.ping and app.update_check
    assert app.events == (Event(3, 1),)
    assert app.arch == "amd64"


def test_parses_post_reboot_request() -> None:
    (app,) = parse_request(ue_request("m" * 8, NEW, event=(3, 2), previous=OLD)).apps
    assert app.raw_app_id.startswith("{")
    assert app.events == (Event(3, 2, None, OLD),)
    assert app.update_check


def test_arch() -> None:
    assert arch_of("arm64-usr", "") == "arm64"
    assert arch_of("", "3510.2.0_aarch64") == "arm64"
    assert arch_of("amd64-usr", "3510.2.0_aarch64") == "amd64"
    assert arch_of("", "") == "amd64"


HOSTILE = {
    "billion laughs": b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<request protocol="3.0">&lol2;</request>""",
    "external entity": b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<request protocol="3.0"><app appid="a" version="1.0.0" track="s" machineid="m">&x;</app>
</request>""",
    "dtd only": b"""<?xml version="1.0"?><!DOCTYPE request SYSTEM "http://127.0.0.1:1/x.dtd"><request/>""",
    "malformed": b"<request protocol='3.0'><app",
    "not xml": b"\x00\xff\xfe garbage",
    "empty": b"",
    "wrong root": b"<html/>",
    "wrong protocol": b'<request protocol="2.0">'
    b'<app appid="a" version="1.0.0" track="s" machineid="m"/></request>',
    "no app": b'<request protocol="3.0"></request>',
    "bad version": ue_request("m1", "3510.2"),
    "non-semver version": ue_request("m1", "latest"),
    "no machine id": ue_request(""),
    "bad machine id": ue_request("m1/../../etc"),
    "bad appid": ue_request("m1", appid="{bad id with spaces}"),
    "event not a number": ue_request("m1", event=(3, 1)).replace(
        b'eventtype="3"', b'eventtype="x"'
    ),
    "event huge number": ue_request("m1", event=(3, 1)).replace(
        b'eventtype="3"', b'eventtype="9' + b"9" * 40 + b'"'
    ),
    "no track": ue_request("m1", track=""),
    "long attribute": ue_request("m1", track="t" * 1000),
    "long track": ue_request("m1", track="t" * 101),
    "long machine id": ue_request("m" * 101),
    "long version": ue_request("m1", "1.0.0-" + "a" * 120),
    "nul character": ue_request("m1", track="a&#0;b"),
    "oversize": b"<request>" + b" " * (MAX_BODY + 1) + b"</request>",
    "too many apps": b'<request protocol="3.0">'
    + b'<app appid="a" version="1.0.0" track="s" machineid="m"/>' * 100
    + b"</request>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_is_an_omaha_error(name: str) -> None:
    with pytest.raises(OmahaError):
        parse_request(HOSTILE[name])


@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(OmahaError):
        parse_request(data)


def test_render_update_and_noupdate() -> None:
    pkg = Package(
        "app",
        NEW,
        "amd64",
        "https://x.test/p",
        "u.gz",
        123,
        SHA,
        "",
        (ExtraFile("oem-azure.gz", 5, "aa" * 32),),
    )
    out = render_response(
        [AppResponse("{app}", 1, True, True, pkg), AppResponse("b", 0, True, True)]
    )
    root = ET.fromstring(out)
    apps = root.findall("app")
    assert apps[0].find("event").get("status") == "ok"  # type: ignore[union-attr]
    uc = apps[0].find("updatecheck")
    assert uc is not None and uc.get("status") == "ok"
    assert uc.find("urls/url").get("codebase") == "https://x.test/p/"  # type: ignore[union-attr]
    main, extra = uc.findall("manifest/packages/package")
    assert (main.get("required"), extra.get("required")) == ("true", "false")
    assert extra.get("hash_sha256") == "aa" * 32
    assert apps[1].find("updatecheck").get("status") == "noupdate"  # type: ignore[union-attr]


# --- lifecycle -----------------------------------------------------------------------------------

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def test_happy_path() -> None:
    s = grant(InstanceState(OLD), NEW, NOW)
    assert s.status == InstanceStatus.UPDATE_GRANTED and s.update_in_progress
    for ev, st_ in (
        (Event(13, 1), "Downloading"),
        (Event(14, 1), "Downloaded"),
        (Event(3, 1), "Installed"),
    ):
        s = apply_event(s, ev, OLD).state
        assert s.status == st_
    out = apply_event(s, Event(3, 2, None, OLD), NEW)
    assert out.completed and out.state.status == InstanceStatus.COMPLETE
    assert out.state.version == NEW and not out.state.update_in_progress
    # A duplicate 3/2 changes nothing.
    assert not apply_event(out.state, Event(3, 2, None, OLD), NEW).changed


def test_errors_and_rollback() -> None:
    s = grant(InstanceState(OLD), NEW, NOW)
    out = apply_event(s, Event(3, 0, 7), OLD)
    assert (
        out.failed and out.state.status == InstanceStatus.ERROR and out.state.last_error_code == 7
    )
    assert out.activity is not None
    assert not apply_event(out.state, Event(3, 0, 7), OLD).failed  # duplicate: counted once
    back = apply_event(apply_event(s, Event(3, 1), OLD).state, Event(3, 2, None, OLD), OLD)
    assert back.failed and back.state.status == InstanceStatus.ERROR


def test_initial_previous_version_resets() -> None:
    out = apply_event(InstanceState(OLD), Event(3, 2, None, "0.0.0.0"), OLD)
    assert out.state.status == InstanceStatus.UNDEFINED and not out.completed


def test_routine_3_2_keeps_an_error_and_resets_only_an_update_in_progress() -> None:
    failed = apply_event(grant(InstanceState(OLD), NEW, NOW), Event(3, 0, 10), OLD).state
    for prev in ("", "0.0.0.0"):  # what update_engine adds to every later check
        assert not apply_event(failed, Event(3, 2, None, prev), OLD).changed
    stuck = grant(InstanceState(OLD), NEW, NOW)
    out = apply_event(stuck, Event(3, 2, None, ""), OLD)
    assert out.state.status == InstanceStatus.UNDEFINED and not out.state.update_in_progress


def test_deferred_and_unknown_events_change_nothing() -> None:
    s = grant(InstanceState(OLD), NEW, NOW)
    assert not apply_event(s, Event(3, 9, 35), OLD).changed
    assert not apply_event(s, Event(42, 1), OLD).changed


def test_hold_and_regrant() -> None:
    assert hold(InstanceState(OLD)).status == InstanceStatus.ON_HOLD
    g = grant(InstanceState(OLD), NEW, NOW)
    assert hold(g) == g
    assert regrant_target(g, OLD) == NEW
    assert regrant_target(g, NEW) is None
    assert regrant_target(apply_event(g, Event(14, 1), OLD).state, OLD) is None
