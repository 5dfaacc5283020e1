"""The fast index.yaml writer and reader agree with PyYAML on everything they accept."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from flotilla.charts import index as idx
from flotilla.charts import yamlemit, yamlread

scalars = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "1.0",
            "1.0.0",
            "yes",
            "No",
            "null",
            "~",
            "y",
            "0x1F",
            "1e3",
            "2019-03-29",
            "2019-03-29T22:50:44.754424+01:00",
            "- a",
            "a: b",
            "a #b",
            "#c",
            "@x",
            "*y",
            "&z",
            "!t",
            "|",
            ">",
            "'q'",
            '"d"',
            " lead",
            "trail ",
            "",
            "a\nb",
            "\u2028",
            "\x85",
            "\ufeff",
            "tab\tx",
            "é",
            "😀",
            "1_000",
            "12:30:00",
            "v1.2",
            "0.1.0-rc.1+build.5",
            ".inf",
            "-.5",
            "+1",
            "=",
            "<<",
        ]
    ),
    st.booleans(),
    st.none(),
)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)


def _pyyaml(text: str) -> Any:
    return yaml.load(text, Loader=idx._NoTimestampLoader)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), documents, max_size=5))
def test_emitter_round_trips_through_pyyaml_and_the_fast_reader(doc: dict[str, Any]) -> None:
    text = yamlemit.dump(doc)
    assert _pyyaml(text) == (doc or None) or (not doc and _pyyaml(text) == {})
    try:
        fast = yamlread.load(text)
    except yamlread.UnsupportedYamlError:
        return
    assert fast == _pyyaml(text)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.text(max_size=12), documents, min_size=1, max_size=5),
    st.sampled_from([20, 80, 1 << 16]),
    st.booleans(),
)
def test_fast_reader_agrees_with_pyyaml_or_declines(
    doc: dict[str, Any], width: int, unicode: bool
) -> None:
    text = yaml.safe_dump(doc, default_flow_style=False, width=width, allow_unicode=unicode)
    try:
        fast = yamlread.load(text)
    except yamlread.UnsupportedYamlError:
        return
    assert fast == _pyyaml(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\n# comment\n",
        "a: &x 1\nb: *x\n",
        "a: [1, [2]]\n",
        "a: [x, ]\n",
        "a: ['x,y']\n",
        "a: plain\n  continued\n",
        "---\na: 1\n",
        "a: 'x' # c\n",
    ],
)
def test_fast_reader_declines_what_it_does_not_know(text: str) -> None:
    with pytest.raises(yamlread.UnsupportedYamlError):
        yamlread.load(text)
    assert idx.load(text.encode() + b"apiVersion: v1\n").extra is not None


@pytest.mark.parametrize(
    "text",
    [
        "a: |\n  one\n\n  two\n\n\nb: x\n",
        "a: |-\n  one\n  # not a comment\n",
        "a: |+\n  x\n\n",
        "l:\n- |\n  item\n  more\n- y\n",
        "a: |\n    deeper\n  less\n",
        "k: [a, 1.0, yes, ~]\n",
        "k: []\nm: {}\n",
    ],
)
def test_fast_reader_reads_literal_blocks_like_pyyaml(text: str) -> None:
    try:
        fast = yamlread.load(text)
    except yamlread.UnsupportedYamlError:
        assert text.startswith("a: |\n    deeper")
        return
    assert fast == _pyyaml(text)


def test_go_yaml_ambiguities_are_quoted() -> None:
    for text in ("y", "n", "on", "1e3", "0x1F", "1.0", "null", "2019-03-29", "1_000"):
        assert yamlemit.scalar(text).startswith('"'), text
    for text in ("1.2.3", "1.0.0-rc.1+build.5", "webapp", "https://x.test/a-1.0.0.tgz"):
        assert yamlemit.scalar(text) == text
    assert yamlemit.scalar("1234567890" * 6 + "1e34").startswith('"')


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=" -:#'\"[]{}|>\\\nab1.\t&*!~,", max_size=60))
def test_fast_reader_never_disagrees_on_arbitrary_text(text: str) -> None:
    try:
        expected = _pyyaml(text)
    except yaml.YAMLError:
        expected = "<error>"
    try:
        fast = yamlread.load(text)
    except yamlread.UnsupportedYamlError:
        return
    assert fast == expected
