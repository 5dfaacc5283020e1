"""YAML loading: same answers as PyYAML's safe loader, line numbers, and hostile input refused."""

from __future__ import annotations

import time

import pytest
import yaml

from flotilla.core import yamlload
from flotilla.core.yamlload import Limits, LineDict, LineList, YamlLimitError, line_of

LOADERS = [pytest.param(None, id="default"), pytest.param(yaml.SafeLoader, id="pure-python")]


def bomb(levels: int, width: int = 9) -> str:
    """The "billion laughs" document: each level aliases the one before ``width`` times."""
    rows = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("loader", LOADERS)
def test_plain_documents_load_as_pyyaml_safe_load_does(loader: type | None) -> None:
    text = "a: 1\nb: [x, 2.5, null, true]\nc: {d: '2024-01-01'}\nt: 2024-01-01\n"
    assert yamlload.load(text, loader=loader) == yaml.safe_load(text)
    assert yamlload.load("", loader=loader) is None
    assert yamlload.load_all("a: 1\n---\n---\nb: 2\n", loader=loader) == [{"a": 1}, None, {"b": 2}]


def test_the_c_loader_is_used_when_pyyaml_has_it() -> None:
    assert yamlload.SafeLoader is getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@pytest.mark.parametrize("loader", LOADERS)
def test_lines_of_documents_keys_and_items(loader: type | None) -> None:
    docs = yamlload.load_all(
        "a: 1\n---\nkind: X\nspec:\n  items:\n    - x\n    - {c: 2}\n", loader=loader, lines=True
    )
    first, second = docs
    assert isinstance(first, LineDict) and first.line == 1
    assert second.line == 3 and second.key_lines == {"kind": 3, "spec": 4}
    items = second["spec"]["items"]
    assert isinstance(items, LineList) and items.line == 6 and items.item_lines == [6, 7]
    assert line_of(items[1]) == 7 and line_of("scalar", default=-1) == -1
    assert second == {"kind": "X", "spec": {"items": ["x", {"c": 2}]}}


def test_merge_keys_and_unhashable_keys_with_lines() -> None:
    merged = yamlload.load("x: &x {a: 1}\ny:\n  <<: *x\n  b: 2\n", lines=True)
    assert merged["y"] == {"a": 1, "b": 2}
    with pytest.raises(yaml.YAMLError, match="unhashable"):
        yamlload.load("? [a, b]\n: 1\n", lines=True)


@pytest.mark.parametrize("loader", LOADERS)
def test_an_alias_bomb_is_refused_fast(loader: type | None) -> None:
    text = bomb(9)
    started = time.perf_counter()
    with pytest.raises(YamlLimitError, match="alias bomb"):
        yamlload.load(text, loader=loader)
    with pytest.raises(yaml.YAMLError):  # callers' existing handlers catch it
        yamlload.load_all(text, loader=loader, lines=True)
    assert time.perf_counter() - started < 5  # the benchmark measures it; this catches a hang


def test_shared_aliases_within_the_limit_still_load() -> None:
    # the root, three keys, then a0 = 1 + 3, a1 = 1 + 3 * 4, a2 = 1 + 3 * 13
    assert yamlload.check_expansion(yaml.compose(bomb(2, width=3))) == 1 + 3 + 4 + 13 + 40
    small = yamlload.load(bomb(2, width=3))
    assert small["a2"] == [[["lol"] * 3] * 3] * 3


def test_size_depth_and_recursion_limits() -> None:
    with pytest.raises(YamlLimitError, match="over the limit"):
        yamlload.load("a: " + "x" * 100, limits=Limits(max_bytes=50))
    with pytest.raises(YamlLimitError, match="deeper than 5"):
        yamlload.load("[[[[[[1]]]]]]", limits=Limits(max_depth=5))
    with pytest.raises(YamlLimitError, match="recursive alias"):
        yamlload.load("&a [*a]")
    tight = Limits(max_alias_nodes=10)
    assert len(yamlload.load("[" + ", ".join(["x"] * 50) + "]", limits=tight)) == 50
    with pytest.raises(YamlLimitError, match="more than 10 nodes"):
        yamlload.load("a: &a [x, y, z]\nb: [*a, *a, *a, *a]\n", limits=tight)
    assert yamlload.load("a: &a [x, y, z]\nb: [*a, *a]\n", limits=tight)["b"][1] == ["x", "y", "z"]
    node = yamlload.compose("v: 1.0")
    assert node is not None and node.value[0][1].tag == "tag:yaml.org,2002:float"
    with pytest.raises(YamlLimitError):
        yamlload.compose(bomb(9))
    with pytest.raises(yaml.YAMLError):  # 10,000 brackets: an error, never a RecursionError
        yamlload.load("[" * 10_000 + "]" * 10_000, loader=yaml.SafeLoader)
    with pytest.raises(yaml.YAMLError):
        yamlload.load("[" * 10_000 + "]" * 10_000)


def test_a_custom_loader_keeps_its_resolvers_and_gets_the_limits() -> None:
    class Strings(yaml.SafeLoader):
        pass

    Strings.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:int"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    assert yamlload.load("n: 12", loader=Strings) == {"n": "12"}
    with pytest.raises(YamlLimitError):
        yamlload.load(bomb(9), loader=Strings)


def test_limit_errors_carry_the_line_and_the_problem_apart() -> None:
    """Callers with their own ``line N: ...`` format (fleet files) read both separately."""
    with pytest.raises(YamlLimitError) as err:
        yamlload.load("ok: 1\nb: &a [*a]\n")
    assert (err.value.line, err.value.problem) == (2, "a recursive alias")
    assert str(err.value) == "line 2: a recursive alias"
    with pytest.raises(YamlLimitError) as err:
        yamlload.load("a: " + "x" * 100, limits=Limits(max_bytes=50))
    assert err.value.line == 0 and str(err.value) == err.value.problem


def _marks(obj: object) -> object:
    """The value with every line mark, to compare two loads exactly."""
    if isinstance(obj, LineDict):
        return ("map", obj.line, obj.key_lines, {k: _marks(v) for k, v in obj.items()})
    if isinstance(obj, LineList):
        return ("seq", obj.line, obj.item_lines, [_marks(v) for v in obj])
    return (type(obj).__name__, obj)


@pytest.mark.parametrize("loader", LOADERS)
def test_documents_without_anchors_build_the_same_as_with(loader: type | None) -> None:
    """Without an ``&`` there is no alias, so the loader builds the tree directly (faster);
    the result, its types and every line mark are the same as through PyYAML's constructor."""
    text = (
        "kind: Role\nrules:\n- apiGroups: ['']\n  verbs: [get, list]\n  n: 3\n"
        "  f: 1.5\n  b: true\n  z: null\n  d: 2024-01-01\n"
        "set: !!set {a: null, b: null}\npairs: !!omap [{x: 1}, {y: 2}]\n"
        "merged: {<<: {a: 1, b: 2}, b: 3}\nbin: !!binary aGk=\n"
        "nested: [[1, [2, {k: [v]}]]]\nlate: {x: 1, <<: {y: 2, x: 0}, z: 3}\n"
        "dup: {a: 1, a: [2]}\nints: {1: one, 2: [two]}\n---\nsecond: [x]\n"
    )
    fast = yamlload.load_all(text, loader=loader, lines=True)
    slow = yamlload.load_all(
        text + "# & makes the loader check aliases\n", loader=loader, lines=True
    )
    assert [_marks(d) for d in fast] == [_marks(d) for d in slow]
    assert fast[0]["merged"] == {"a": 1, "b": 3} and fast[0]["set"] == {"a", "b"}
    # a merge key after plain keys: the mapping is built again the loader's way
    assert fast[0]["late"] == {"x": 1, "y": 2, "z": 3} and fast[0]["dup"] == {"a": [2]}
    deep = "a:\n  b:\n    c:\n      d: 1\n"
    with pytest.raises(YamlLimitError, match="deeper than 3") as err:
        yamlload.load(deep, loader=loader, lines=True, limits=Limits(max_depth=3))
    assert err.value.line == 3  # key c: the first node below the third level, in text order
    with pytest.raises(yaml.YAMLError, match="unhashable"):
        yamlload.load("? [a]\n: 1\n", loader=loader, lines=True)
