"""Strict validation: whole strings only (no trailing newline), ASCII digits only, bounded sizes."""

from __future__ import annotations

import pytest

from flotilla.localpv.controller.views import VolumeView
from flotilla.localpv.model import Claim
from flotilla.localpv.node.agent import spec_from
from flotilla.localpv.policies import (
    InvalidInput,
    parse_class_params,
    parse_quantity,
    render_subpath,
    validate_component,
    validate_subpath,
    whole_number,
)
from flotilla.localpv.resources import allocation_from, node_report

HOSTILE_NAMES = {
    "trailing newline": "x\n",
    "newline inside": "a\nb",
    "NUL": "a\x00b",
    "carriage return": "x\r",
    "tab": "x\t",
    "Arabic-Indic digit": "\u0663",
    "fullwidth digit": "\uff11",
    "Cyrillic a": "d\u0430ta",
    "Kelvin sign": "\u212a",
    "dotless i": "\u0131",
    "fullwidth solidus": "a\uff0fb",
    "division slash": "a\u2215b",
    "one dot leader": "\u2024\u2024",
    "zero-width space": "a\u200bb",
    "too long": "a" * 256,
    "too long in bytes": "a" + "\u00e9" * 128,
}


@pytest.mark.parametrize("name", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_hostile_path_components_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        validate_component(name)
    with pytest.raises(InvalidInput):
        validate_subpath(["ns", name])


def test_the_longest_allowed_component_is_exactly_name_max() -> None:
    validate_component("a" * 255)


@pytest.mark.parametrize("subdir", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_hostile_subdir_annotations_never_render(subdir: str) -> None:
    claim = Claim("ns", "data", "u1", 1, annotations={"localpv.flotilla.dev/subdir": subdir})
    with pytest.raises(InvalidInput):
        render_subpath("{subdir}/{pv}", claim)


@pytest.mark.parametrize("pattern", ["{pv}\n", "{pv}/x\n", "x\n/{pv}", "{pv}\x00", "\u0663/{pv}"])
def test_hostile_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidInput):
        parse_class_params({"pathPattern": pattern})


NOT_IDS = [
    "\u0663",
    "\uff11",
    "1\n",
    " 1",
    "1 ",
    "+1",
    "-1",
    "1_0",
    "0x1",
    "",
    "2147483648",
    "9" * 5000,
    "\u00b2",
]


@pytest.mark.parametrize("text", NOT_IDS)
@pytest.mark.parametrize("key", ["uid", "gid"])
def test_uid_and_gid_are_ascii_digits_in_range(key: str, text: str) -> None:
    with pytest.raises(InvalidInput, match=key):
        parse_class_params({key: text})


def test_uid_and_gid_accept_plain_numbers() -> None:
    params = parse_class_params({"uid": "0", "gid": "2147483647"})
    assert (params.uid, params.gid) == (0, 2**31 - 1)


@pytest.mark.parametrize(
    "params",
    [
        {"mode": "0750\n"},
        {"mode": "\u0667\u0665\u0660"},
        {"nodeAffinityKey": "kubernetes.io/hostname\n"},
        {"nodeAffinityKey": "kubernetes.io/hostn\u0430me"},
        {"backend": "lvm", "volumeGroup": "vg0\n"},
        {"backend": "lvm", "volumeGroup": "v" * 128},
        {"backend": "hostpath\n"},
        {"fsType": "ext4\n"},
    ],
)
def test_other_class_parameters_match_whole_strings(params: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        parse_class_params(params)


@pytest.mark.parametrize(
    "text", ["1Gi\n", "\n1Gi", " 1Gi", "\u0661Gi", "1\uff27i", "1e99999", "1" * 65, "1Gi\x00"]
)
def test_quantities_match_whole_ascii_strings(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_quantity(text)


@pytest.mark.parametrize(
    "value", [True, False, -1, 1.5, "\u0663", "7\n", " 7", "+7", "1_0", None, [7], "9" * 20]
)
def test_whole_numbers_from_objects_are_ints_or_ascii_digits(value: object) -> None:
    with pytest.raises(InvalidInput):
        whole_number(value, "size")


def test_whole_numbers_accept_ints_and_digit_strings() -> None:
    assert (whole_number(0, "n"), whole_number("42", "n"), whole_number(2**40, "n")) == (
        0,
        42,
        2**40,
    )


LV = {
    "metadata": {"name": "pvc-1"},
    "spec": {
        "node": "n1",
        "backend": "hostpath",
        "pool": "/srv",
        "size": 10,
        "subpath": ["ns", "v"],
        "owner": {"uid": 1, "gid": 2, "mode": 0o750},
    },
}


@pytest.mark.parametrize(
    "bad",
    [
        {"size": "\u0663"},
        {"size": "10\n"},
        {"size": True},
        {"size": -5},
        {"owner": {"uid": "\u0663"}},
        {"owner": {"gid": -1}},
        {"owner": {"uid": True}},
        {"owner": {"uid": 2**31}},
        {"owner": {"mode": True}},
        {"subpath": ["ns", "v\n"]},
        {"subpath": ["ns\x00", "v"]},
    ],
)
def test_the_agent_refuses_local_volumes_with_odd_numbers_or_names(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        spec_from({"metadata": LV["metadata"], "spec": {**LV["spec"], **bad}})


def test_the_controller_ignores_odd_sizes_in_objects() -> None:
    assert allocation_from({"metadata": {}, "spec": {**LV["spec"], "size": "\u0663"}}) is None
    assert VolumeView.of({"metadata": {"name": "v"}, "spec": {"size": "\u0663"}}).size == 0
    report = node_report(
        "n1",
        {"metadata": {"uid": "u"}},
        {
            "status": {
                "pools": [
                    {"backend": "hostpath", "name": "/srv", "budget": "\u0663", "free": 1},
                    {"backend": "hostpath", "name": "/ok", "budget": 5, "free": 4},
                ]
            }
        },
        30,
    )
    assert [p.name for p in report.pools] == ["/ok"]
