"""YAML loading for every system: the C loader when present, line numbers, and limits.

Flotilla reads YAML it did not write (charts, manifests, catalogs, fleet files, function specs),
so loading is bounded:

- ``max_bytes``: the text itself;
- ``max_alias_nodes``: nodes that aliases add once expanded. An alias bomb ("billion laughs") is
  a few lines whose aliases expand to billions of nodes. PyYAML builds one cheaply, because an
  alias shares the object, but whatever walks the result next (a linter, ``json.dumps``, an
  audit) would never finish. The check walks the composed node graph once, counting each
  shared node once, so rejecting a bomb costs as little as reading it. A document without
  aliases adds nothing, so a large index is bounded by ``max_bytes`` alone;
- ``max_depth``: nesting, so deep brackets give an error rather than a ``RecursionError``;
- recursive aliases (``&a [*a]``) are refused: no configuration needs a cycle.

A limit error is a :class:`yaml.YAMLError`, so every caller's existing ``except yaml.YAMLError``
reports it as bad YAML with no new code. With ``lines=True`` mappings and sequences come back as
:class:`LineDict` / :class:`LineList`, which know the 1-based line they start on and those of
their keys or items, for messages such as ``line 12: spec.channel: ...``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import yaml

SafeLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it (about 10x faster), else PyYAML's."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one YAML stream; the defaults are far above any real chart, manifest or index."""

    max_bytes: int = 64 * 2**20
    """Size of the text, in bytes (or characters, for ``str`` input)."""
    max_alias_nodes: int = 1_000_000
    """Nodes aliases add to one document when expanded (each scalar, key and collection is one)."""
    max_depth: int = 256
    """Nesting of collections in one document."""


DEFAULT_LIMITS = Limits()
_TOO_DEEP = "YAML nested too deeply to read"


class YamlLimitError(yaml.YAMLError):
    """The YAML is refused before it is built: too big, an alias bomb, too deep or recursive.

    ``problem`` is the reason alone and ``line`` the 1-based line it was found on (0 when the
    whole text is refused), for callers that format their own ``line N: ...`` messages.
    """

    def __init__(self, problem: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {problem}" if line else problem)
        self.problem = problem
        self.line = line


class LineDict(dict[Any, Any]):
    """A mapping that knows its 1-based start ``line`` and the line of each key.

    Slots, not an instance ``__dict__``: a manifest has dozens of these, and without a
    ``__dict__`` each is 60% smaller and made 2.7x faster (500,000: 0.36 s instead of 1.0 s);
    loading the operators bench's 20,000 manifests in a fresh process took 2.6-3.1 s of CPU
    instead of 3.1-3.3 s. Whoever makes one sets both fields.
    """

    __slots__ = ("key_lines", "line")
    line: int
    key_lines: dict[Any, int]


class LineList(list[Any]):
    """A sequence that knows its 1-based start ``line`` and the line of each item (slots, as
    :class:`LineDict`; whoever makes one sets both fields)."""

    __slots__ = ("item_lines", "line")
    line: int
    item_lines: list[int]


def line_of(obj: object, default: int = 0) -> int:
    """The start line of a collection loaded with ``lines=True``, else ``default``."""
    return obj.line if isinstance(obj, LineDict | LineList) else default


def load(
    text: str | bytes,
    *,
    loader: type[Any] | None = None,
    lines: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> Any:
    """The single document of ``text`` (``None`` when empty), checked against ``limits``.

    ``loader`` is a loader class to start from (default :data:`SafeLoader`), for callers that
    change its resolvers; it must be a safe loader.
    """
    instance = _open(text, loader, lines, limits)
    tree = not _may_alias(text)
    try:
        node = instance.get_single_node()
        return None if node is None else _construct(instance, node, limits, tree, lines)
    except RecursionError:  # PyYAML's pure-Python composer recurses once per nesting level
        raise YamlLimitError(_TOO_DEEP) from None
    finally:
        instance.dispose()


def load_all(
    text: str | bytes,
    *,
    loader: type[Any] | None = None,
    lines: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Any]:
    """Every document of ``text``, in order (an empty document is ``None``); see :func:`load`."""
    instance = _open(text, loader, lines, limits)
    tree = not _may_alias(text)
    try:
        docs = []
        while instance.check_node():
            docs.append(_construct(instance, instance.get_node(), limits, tree, lines))
        return docs
    except RecursionError:
        raise YamlLimitError(_TOO_DEEP) from None
    finally:
        instance.dispose()


def compose(
    text: str | bytes, *, loader: type[Any] | None = None, limits: Limits = DEFAULT_LIMITS
) -> yaml.Node | None:
    """The node graph of the single document of ``text``, for callers that read tags."""
    instance = _open(text, loader, False, limits)
    try:
        node: yaml.Node | None = instance.get_single_node()
        if node is not None:
            check_expansion(node, limits)
        return node
    except RecursionError:
        raise YamlLimitError(_TOO_DEEP) from None
    finally:
        instance.dispose()


def _open(text: str | bytes, loader: type[Any] | None, lines: bool, limits: Limits) -> Any:
    if len(text) > limits.max_bytes:
        raise YamlLimitError(f"YAML of {len(text)} bytes is over the limit of {limits.max_bytes}")
    base = loader or SafeLoader
    if not _is_c_loader(base):
        _check_flow_depth(text, limits.max_depth)
    return (_line_loader(base) if lines else base)(text)


def _is_c_loader(loader: type[Any]) -> bool:
    c_parser = getattr(getattr(yaml, "cyaml", None), "CParser", None)
    return c_parser is not None and issubclass(loader, c_parser)


_FLOW_STR = re.compile(r"[\[\]{}]")
_FLOW_BYTES = re.compile(rb"[\[\]{}]")


def _check_flow_depth(text: str | bytes, max_depth: int) -> None:
    """Refuse deep flow nesting before PyYAML's pure-Python scanner sees it.

    That scanner is quadratic in flow depth (1,000 nested ``[`` take a second, 100,000 take
    minutes) and fails only when the composer reaches Python's recursion limit. Brackets are
    counted without parsing, so brackets inside quoted strings count too: a false refusal needs
    more than ``max_depth`` unclosed brackets in strings. libyaml has its own limit and skips this.
    """
    depth = 0
    pattern = _FLOW_BYTES if isinstance(text, bytes) else _FLOW_STR
    for match in pattern.finditer(text):  # type: ignore[arg-type]
        if match.group()[:1] in ("[", "{", b"[", b"{"):
            depth += 1
            if depth > max_depth:
                line = text.count(b"\n" if isinstance(text, bytes) else "\n", 0, match.start())  # type: ignore[arg-type]
                raise YamlLimitError(f"nested deeper than {max_depth} levels", line + 1)
        elif depth:
            depth -= 1


def _may_alias(text: str | bytes) -> bool:
    """Can the text share a node? Only through an anchor (``&``): without one the node graph
    is a tree, so no alias can add nodes or close a cycle, and only the depth needs checking."""
    return (b"&" if isinstance(text, bytes) else "&") in text  # type: ignore[operator]


def _construct(
    instance: Any, node: yaml.Node, limits: Limits, tree: bool = False, lines: bool = False
) -> Any:
    if not tree:
        check_expansion(node, limits)
        return instance.construct_document(node)
    if not lines:
        _check_depth(node, limits.max_depth)
        return instance.construct_document(node)
    try:
        return _TreeBuilder(instance, limits.max_depth).build(node, 1)
    finally:
        instance.constructed_objects = {}
        instance.recursive_objects = {}


_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_STR_TAG = "tag:yaml.org,2002:str"
_PLAIN_KEYS = (str, int, float, bool, type(None))


class _TreeBuilder:
    """Build a node tree (no anchors) into LineDict/LineList directly, checking its depth.

    The same objects as ``construct_document`` with the line loader, without PyYAML's
    per-node bookkeeping for shared and recursive nodes, which a tree does not need, and with
    the depth checked on the way down instead of in a pass of its own: about twice as fast on
    manifests. Scalars use the loader's own constructors (its resolvers and tags); a collection
    with another tag (``!!set``, ``!!omap``) goes to the loader.
    """

    def __init__(self, loader: Any, max_depth: int) -> None:
        self.loader = loader
        self.max_depth = max_depth
        self.scalars: dict[str, Any] = {}
        make_str = loader.yaml_constructors.get(_STR_TAG)
        self.plain_str = make_str is yaml.constructor.SafeConstructor.construct_yaml_str

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == _STR_TAG and self.plain_str:
            return node.value
        make = self.scalars.get(node.tag)
        if make is None:
            make = self.loader.yaml_constructors.get(node.tag)
            if make is None:
                return self.loader.construct_object(node, deep=True)
            self.scalars[node.tag] = make
        return make(self.loader, node)

    def build(self, node: yaml.Node, depth: int) -> Any:
        if depth > self.max_depth:
            raise YamlLimitError(
                f"nested deeper than {self.max_depth} levels", node.start_mark.line + 1
            )
        kind = node.__class__
        if kind is yaml.ScalarNode:
            return self.scalar(node)  # type: ignore[arg-type]
        below = depth + 1
        if kind is yaml.MappingNode and node.tag == _MAP_TAG:
            return self.mapping(node, below)  # type: ignore[arg-type]
        if kind is yaml.SequenceNode and node.tag == _SEQ_TAG:
            return self.sequence(node, below)  # type: ignore[arg-type]
        _check_depth(node, self.max_depth - depth + 1)
        return self.loader.construct_object(node, deep=True)

    def mapping(self, node: yaml.MappingNode, below: int) -> LineDict:
        """Plain string keys and plain string values are taken inline, without a call each
        (most of a manifest's nodes); anything else goes through :meth:`build`. Only a mapping
        with a key that is not a plain string can hold a merge key (``<<``, ``!!merge``,
        ``!!value``), so the loader's ``flatten_mapping`` runs first for those alone, and
        afterwards when a key repeated (the loader notes duplicates there). Measured on the
        bench's manifests (20,000 files, ~50 nodes each): building takes 0.43-0.50 s instead of
        0.54-0.60 s with one call per node and a flatten pass per mapping; libyaml's parse and
        compose of the same files take 1.1-1.25 s, the floor of this loader."""
        result = LineDict()
        result.line = node.start_mark.line + 1
        key_lines: dict[Any, int] = {}
        fast = self.plain_str and below <= self.max_depth
        scalar_node, str_tag = yaml.ScalarNode, _STR_TAG
        pairs = node.value
        built: dict[int, Any] = {}
        if fast:
            for key_node, value_node in pairs:
                if key_node.__class__ is not scalar_node or key_node.tag != str_tag:
                    # a merge key or an odd key: the loader's way, from the start, keeping the
                    # values built so far (building one twice would note its duplicates twice)
                    fast = False
                    for done_key, done_value in pairs:
                        if done_key is key_node:
                            break
                        built[id(done_value)] = result[done_key.value]
                    result.clear()
                    key_lines.clear()
                    break
                key = key_node.value
                if value_node.__class__ is scalar_node and value_node.tag == str_tag:
                    result[key] = value_node.value
                else:
                    result[key] = self.build(value_node, below)
                key_lines[key] = key_node.start_mark.line + 1
        if not fast:
            self.loader.flatten_mapping(node)  # merge keys (<<) and duplicate notes
            for key_node, value_node in node.value:
                key = self.build(key_node, below)
                if not isinstance(key, _PLAIN_KEYS) and not isinstance(key, Hashable):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        "found an unhashable key",
                        key_node.start_mark,
                    )
                done = built.get(id(value_node), built)
                result[key] = self.build(value_node, below) if done is built else done
                key_lines[key] = key_node.start_mark.line + 1
        elif len(result) != len(pairs):  # a key repeated: let the loader note it
            self.loader.flatten_mapping(node)
        result.key_lines = key_lines
        return result

    def sequence(self, node: yaml.SequenceNode, below: int) -> LineList:
        children = node.value
        if self.plain_str and below <= self.max_depth:
            scalar_node, str_tag = yaml.ScalarNode, _STR_TAG
            items = LineList(
                [
                    child.value
                    if child.__class__ is scalar_node and child.tag == str_tag
                    else self.build(child, below)
                    for child in children
                ]
            )
        else:
            items = LineList([self.build(child, below) for child in children])
        items.line = node.start_mark.line + 1
        items.item_lines = [child.start_mark.line + 1 for child in children]
        return items


def _check_depth(root: yaml.Node, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` in a node tree (no aliases): one cheap pass.

    Same verdict as :func:`check_expansion` on a tree, at a third of its cost: no memo, and
    scalars are never pushed (a scalar below the deepest allowed collection is the error).
    """
    stack: list[tuple[Any, int]] = [(root, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        children = node.value
        if type(children) is not list:  # a scalar
            continue
        if depth > max_depth:
            raise YamlLimitError(f"nested deeper than {max_depth} levels", node.start_mark.line + 1)
        below = depth + 1
        items = [part for pair in children for part in pair] if node.id == "mapping" else children
        for child in items:
            if type(child.value) is list:
                push((child, below))
            elif below > max_depth:
                raise YamlLimitError(
                    f"nested deeper than {max_depth} levels", child.start_mark.line + 1
                )


def check_expansion(root: yaml.Node, limits: Limits = DEFAULT_LIMITS) -> int:
    """Nodes ``root`` stands for once aliases are expanded; raises :class:`YamlLimitError`
    when aliases add more than ``limits.max_alias_nodes`` to the nodes written in the text.

    Iterative and memoised by node identity: each distinct node is visited once, so a bomb of
    nine levels of nine aliases (387 million nodes expanded) costs about a hundred steps.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[key] = size
            # len(sizes) bounds the distinct nodes below this one, so the excess is a floor
            if size - len(sizes) > limits.max_alias_nodes:
                raise YamlLimitError(
                    f"aliases add more than {limits.max_alias_nodes} nodes to this YAML "
                    "(an alias bomb?)",
                    node.start_mark.line + 1,
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YamlLimitError("a recursive alias", node.start_mark.line + 1)
        if depth > limits.max_depth:
            raise YamlLimitError(
                f"nested deeper than {limits.max_depth} levels", node.start_mark.line + 1
            )
        open_nodes.add(key)
        stack.append((node, depth, True))
        stack.extend(
            (child, depth + 1, False) for child in _children(node) if id(child) not in sizes
        )
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


_LINE_LOADERS: dict[type[Any], type[Any]] = {}


def _line_loader(base: type[Any]) -> type[Any]:
    """``base`` whose mappings and sequences come back as :class:`LineDict` / :class:`LineList`."""
    cls = _LINE_LOADERS.get(base)
    if cls is None:
        extra: dict[str, Any] = {}
        if not getattr(base, "yaml_path_resolvers", None):
            extra = {
                "resolve": _cached_resolve(base),
                "descend_resolver": _NO_PATH_DESCEND,
                "ascend_resolver": _NO_PATH_ASCEND,
            }
        cls = type(f"Line{base.__name__}", (base,), extra)
        cls.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
        cls.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
        _LINE_LOADERS[base] = cls
    return cls


_NO_PATH_DESCEND: Any = operator.is_
_NO_PATH_ASCEND: Any = int
"""Path resolvers are unused, so the two calls the composer makes per node
(``descend_resolver(parent, index)``, ``ascend_resolver()``) do nothing: any built-in taking
those arguments will do, and a built-in runs no Python frame (a class attribute that is not a
Python function is not bound, so it gets exactly those arguments). Composing the operators
bench's 20,000 manifests took 0.96-0.98 s of CPU instead of 1.06-1.07 s with a Python no-op."""


_RESOLVE_CACHE_SIZE = 65_536
_RESOLVE_VALUE_LENGTH = 64


def _cached_resolve(base: type[Any]) -> Any:
    """``base.resolve`` remembering the tag of short plain scalars.

    The composer asks for the tag of every node; manifests repeat the same keys and values
    (``apiVersion``, ``get``, ``""``) hundreds of thousands of times, and each answer is a walk
    through regular expressions. Only valid without path resolvers (the tag then depends on the
    value alone); the cache is bounded in entries and in value length.
    """
    original = base.resolve
    cache: dict[str, str] = {}
    scalar, sequence, mapping = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode
    scalar_tag = base.DEFAULT_SCALAR_TAG
    defaults = {sequence: base.DEFAULT_SEQUENCE_TAG, mapping: base.DEFAULT_MAPPING_TAG}

    def resolve(self: Any, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is not scalar:  # untagged collections: the default tag, as Resolver.resolve
            return defaults.get(kind) or original(self, kind, value, implicit)
        if not implicit[0]:  # quoted: a string
            return scalar_tag
        if len(value) > _RESOLVE_VALUE_LENGTH:
            return original(self, kind, value, implicit)
        tag = cache.get(value)
        if tag is None:
            tag = original(self, kind, value, implicit)
            if len(cache) < _RESOLVE_CACHE_SIZE:
                cache[value] = tag
        return tag

    return resolve


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> LineDict:
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    loader.flatten_mapping(node)  # merge keys (<<), as the safe loader does
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: Any, node: yaml.SequenceNode) -> LineList:
    items = LineList(loader.construct_object(child, deep=True) for child in node.value)
    items.line = node.start_mark.line + 1
    items.item_lines = [child.start_mark.line + 1 for child in node.value]
    return items
