"""Nebraska-compatible answers for requests the server cannot serve: an unknown appid or track
and an arch mismatch get Omaha error statuses inside an HTTP 200, as Nebraska 3.0.0 sends them."""

from __future__ import annotations

from collections.abc import Callable
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import func, select

from flotilla.updates.node.omaha_client import ResponseError, parse_response
from flotilla.updates.server.schema import instances, make_engine
from tests.updates.conftest import NEW, OLD, Server, apply_doc, fleet, ue_request

UNKNOWN_APP = "{00000000-0000-0000-0000-00000000cafe}"


def apps(body: bytes) -> list[ET.Element]:
    return ET.fromstring(body).findall("app")


def instance_count(db: str) -> int:
    engine = make_engine(db, pool_size=1)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(instances)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "body",
    [
        ue_request("a" * 32, appid=UNKNOWN_APP),
        ue_request("a" * 32, track="no-such-track"),
        # Event-only reports too: Nebraska answers the updatecheck error, not the events.
        ue_request("a" * 32, track="no-such-track", ping=False, check=False, event=(3, 2)),
    ],
    ids=["appid", "track", "event-only"],
)
def test_unknown_app_or_track_answers_as_nebraska(
    sqlite_url: str, serve: Callable[..., Server], body: bytes
) -> None:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    r = s.omaha(body)
    assert r.status_code == 200
    (app,) = apps(r.content)
    assert app.get("status") == "error-failedToRetrieveUpdatePackageInfo"
    assert [(c.tag, c.get("status")) for c in app] == [("updatecheck", "error-internal")]
    assert instance_count(sqlite_url) == 0  # nothing recorded for a machine we do not serve
    # What our agent (and update_engine) makes of it: a clear error naming the status.
    with pytest.raises(ResponseError, match="error-internal"):
        parse_response(r.content, app.get("appid", ""))


def test_unknown_app_next_to_a_known_one(sqlite_url: str, serve: Callable[..., Server]) -> None:
    """Each app is answered on its own: the known one still gets its update."""
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    known = ue_request("b" * 32).decode()
    unknown_app = ue_request("b" * 32, appid=UNKNOWN_APP).decode()
    start = unknown_app.index("<app ")
    extra = unknown_app[start : unknown_app.index("</app>") + len("</app>")]
    body = known.replace("</request>", extra + "\n</request>").encode()
    first, second = apps(s.omaha(body).content)
    assert first.get("status") == "ok"
    assert first.find("updatecheck").get("status") == "ok"  # type: ignore[union-attr]
    assert second.get("appid") == UNKNOWN_APP
    assert second.get("status") == "error-failedToRetrieveUpdatePackageInfo"
    assert instance_count(sqlite_url) == 1


def test_a_new_group_is_served_once_it_exists(
    sqlite_url: str, serve: Callable[..., Server]
) -> None:
    """Unknown tracks are not cached: adding the group fixes the machines at once."""
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    body = ue_request("c" * 32, track="edge")
    assert apps(s.omaha(body).content)[0].get("status").startswith("error-")  # type: ignore[union-attr]
    apply_doc(
        sqlite_url,
        fleet(
            {"name": "stable", "track": "stable", "channel": "stable"},
            {"name": "edge", "track": "edge", "channel": "stable"},
        ),
    )
    assert apps(s.omaha(body).content)[0].get("status") == "ok"


def _amd64_only(*groups: dict[str, str]) -> dict[str, object]:
    doc = fleet(*groups)
    app = doc["applications"][0]
    app["packages"] = [p for p in app["packages"] if p["arch"] == "amd64"]
    return doc


def test_arch_mismatch_is_an_error_status_and_one_activity_entry_per_group_and_arch(
    sqlite_url: str, serve: Callable[..., Server]
) -> None:
    apply_doc(
        sqlite_url,
        _amd64_only(
            {"name": "stable", "track": "stable", "channel": "stable"},
            {"name": "lab", "track": "lab", "channel": "stable"},
        ),
    )
    s = serve(sqlite_url)
    for machine in ("d" * 32, "e" * 32):
        for _ in range(3):
            r = s.omaha(ue_request(machine, board="arm64-usr", event=(3, 2), previous=OLD))
            assert r.status_code == 200
            (app,) = apps(r.content)
            assert app.get("status") == "error-noPackageFound"
            # The machine is known: its ping and event are taken as usual.
            assert [(c.tag, c.get("status")) for c in app] == [
                ("event", "ok"),
                ("ping", "ok"),
                ("updatecheck", "error-internal"),
            ]
    s.omaha(ue_request("f" * 32, track="lab", board="arm64-usr"))
    s.omaha(ue_request("f" * 32, track="lab", board="arm64-usr"))
    # amd64 machines of the same group are served.
    amd = apps(s.omaha(ue_request("1" * 32)).content)[0]
    assert amd.find("updatecheck").get("status") == "ok"  # type: ignore[union-attr]
    feed = s.client.get("/api/v1/activity", headers=s.reader()).json()
    missing = [a["message"] for a in feed if a["kind"] == "PackageNotFound"]
    assert sorted(missing) == [
        f"group lab: no arm64 package of {NEW} (arch mismatch: the channel's version has "
        "amd64 only)",
        f"group stable: no arm64 package of {NEW} (arch mismatch: the channel's version has "
        "amd64 only)",
    ]
    assert instance_count(sqlite_url) == 4  # arm64 machines are listed, so they can be found
