"""The dashboard's pure parts: form fields to typed values, errors per field, safe redirects."""

from __future__ import annotations

import pytest

from flotilla.updates.server.dashboard.forms import (
    FormTooLargeError,
    parse_form,
    policy_from_form,
    version_from_form,
)
from flotilla.updates.server.dashboard.routes import _safe_next

GOOD = {
    "updates_enabled": "on",
    "max_updates_per_period": "10",
    "period_interval": "1h",
    "update_timeout": "45m",
    "rollout_percent": "12.5",
    "max_failures": "",
    "timezone": "UTC",
    "maintenance_windows": "Sat 02:00-06:00\nSun 02:00-06:00, Mon-Fri 22:00-01:00",
    "pinned_version": "",
}


def test_a_good_form_becomes_a_policy() -> None:
    policy, errors = policy_from_form(GOOD)
    assert errors == {}
    assert policy["updates_enabled"] is True
    assert policy["safe_mode"] is False  # an unchecked box is not sent at all
    assert policy["max_failures"] is None
    assert policy["pinned_version"] is None
    assert policy["rollout_percent"] == 12.5
    assert policy["maintenance_windows"] == [
        "Sat 02:00-06:00",
        "Sun 02:00-06:00",
        "Mon-Fri 22:00-01:00",
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_updates_per_period", "", "whole number"),
        ("max_updates_per_period", "1e3", "whole number"),
        ("max_failures", "-2", "whole number"),
        ("rollout_percent", "half", "number from 0 to 100"),
        ("rollout_percent", "101", "number from 0 to 100"),
        ("rollout_percent", "nan", "number from 0 to 100"),
        ("period_interval", "0s", "longer than 0s"),
        ("update_timeout", "", "required"),
        ("timezone", "Nowhere/Town", "unknown timezone"),
        ("maintenance_windows", "Fri 25:00-26:00", ""),
        ("pinned_version", "v1", "not a semantic version"),
    ],
)
def test_each_bad_field_gets_its_own_error(field: str, value: str, message: str) -> None:
    _, errors = policy_from_form({**GOOD, field: value})
    assert set(errors) == {field}
    assert message in errors[field]


def test_channel_versions_must_exist() -> None:
    assert version_from_form(" 1.2.3 ", ["1.2.3"]) == ("1.2.3", None)
    assert version_from_form("", ["1.2.3"])[1] == "pick a version"
    assert "semantic" in (version_from_form("latest", ["1.2.3"])[1] or "")
    assert "no package" in (version_from_form("9.9.9", ["1.2.3"])[1] or "")


def test_forms_are_size_limited_and_last_value_wins() -> None:
    assert parse_form(b"a=1&a=2&b=&c=%3Cx%3E") == {"a": "2", "b": "", "c": "<x>"}
    with pytest.raises(FormTooLargeError):
        parse_form(b"a=" + b"x" * 70_000)


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("/ui/activity", "/ui/activity"),
        ("/ui/apps/x?page=2", "/ui/apps/x?page=2"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_login_redirects_stay_on_the_site(raw: str, safe: str) -> None:
    assert _safe_next(raw) == safe
