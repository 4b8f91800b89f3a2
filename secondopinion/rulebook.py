"""Loading and checking rule files.

Rule files are safe YAML (no tags, no Python, nothing evaluated). Each file is
first checked against the JSON Schema shipped in
``secondopinion/schemas/rules.schema.json``, then against the project's
vocabulary: known fact types, attributes and values, known recommendation
kinds and their fields, bindings defined before use, unique rule ids, known
guidance ids and source sections. Every problem is reported with the file, the
line and the rule id in one :class:`RuleFileError`.

A :class:`Rulebook` is the checked, immutable result: the rules, the derived
fact types, and the source registry (documents, guidance, evidence, tensions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
import yaml

from . import rulecache
from .case import CaseError, Domain, case_fact_types, load_case
from .recommendations import KINDS, Evidence, Priority, SourceRef

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "Condition",
    "Coverage",
    "Derive",
    "DerivedFactType",
    "Document",
    "Example",
    "GuidanceItem",
    "Monotonicity",
    "Pattern",
    "Recommend",
    "Ref",
    "Rule",
    "RuleFileError",
    "RuleProblem",
    "Rulebook",
    "Tension",
    "default_rules_path",
    "iter_conditions",
    "rules_schema",
]

Status = Literal["draft", "active", "retired"]


# --------------------------------------------------------------------------- errors


@attrs.frozen
class RuleProblem:
    """One mistake in a rule file: where it is and what is wrong."""

    file: str
    line: int | None
    rule_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        rule = f" rule {self.rule_id}:" if self.rule_id else ""
        return f"{where}:{rule} {self.message}"


class RuleFileError(ValueError):
    """One or more rule files are wrong. ``problems`` lists each with file, line and rule id."""

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0] if self.problems else None
        self.file = first.file if first else None
        self.line = first.line if first else None
        self.rule_id = first.rule_id if first else None
        body = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in rule files:\n{body}")

    def __reduce__(self) -> tuple[type[RuleFileError], tuple[list[RuleProblem]]]:
        """Pickle by problems, so the error crosses process boundaries intact (batch, dask)."""
        return (type(self), (list(self.problems),))


# --------------------------------------------------------------------------- safe YAML with lines


class _Map(dict[str, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class _Seq(list[Any]):
    """A YAML sequence that remembers its own line and the line of each item."""

    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader that records lines, keeps yes/no/on/off and dates as plain text, and refuses duplicate keys.

    It also refuses aliases (``*name``): nested aliases let a few lines stand for
    millions of nodes ("billion laughs"), which checking would then walk and quote.
    """

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            peek: Any = self.peek_event  # untyped in types-PyYAML
            mark = peek().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in rule files", mark)
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | bool):
            raise yaml.constructor.ConstructorError(None, None, "mapping keys must be plain words", key_node.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[str(key)] = loader.construct_object(value_node, deep=True)
        out.key_lines[str(key)] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


class _AliasFound(Exception):
    """The fast loader met an alias: the line-tracking loader reports it."""


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's C parser with the same resolvers and constructors as :class:`_Loader`.

    It is the fast path only: on any problem (a YAML error, an alias) the file
    is read again with :class:`_Loader`, whose messages and lines make the
    error report. Nodes keep their lines either way. An alias shows here as a
    node constructed twice, and is refused before anything is copied.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node in self.constructed_objects:
            raise _AliasFound
        return super().construct_object(node, deep=deep)


_FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
_FastLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_FastLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _parse(text: str) -> Any:
    """Parse rule file text: libyaml when it succeeds, else the pure-Python loader (for its error report)."""
    if _FastLoader is not _Loader:
        try:
            return yaml.load(text, Loader=_FastLoader)  # noqa: S506 - a SafeLoader with safe constructors
        except (yaml.YAMLError, _AliasFound, RecursionError, ValueError, TypeError):
            pass
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass


_MAP_MARK = "\x01"
_SEQ_MARK = "\x02"


def _encode(value: Any) -> Any:
    """A parsed, schema-checked file as JSON data that keeps every line (for the cache).

    A mapping becomes an object whose first key, ``"\\x01"``, holds its line and
    its keys' lines; a sequence becomes ``{"\\x02": [line, item lines...], "v":
    [items...]}``. Scalars stay as they are. Raises TypeError for anything else
    (such a file is then not cached).
    """
    if isinstance(value, _Map):
        out: dict[str, Any] = {_MAP_MARK: [value.line, *(value.key_lines[key] for key in value)]}
        for key, item in value.items():
            if type(key) is not str or key[:1] in (_MAP_MARK, _SEQ_MARK):
                raise TypeError("not cacheable")
            out[key] = _encode(item)
        return out
    if isinstance(value, _Seq):
        return {_SEQ_MARK: [value.line, *value.item_lines], "v": [_encode(item) for item in value]}
    if value is None or type(value) in (str, int, float, bool):
        return value
    raise TypeError("not cacheable")


def _decode_object(pairs: list[tuple[str, Any]]) -> _Map | _Seq:
    """``object_pairs_hook`` of :func:`_decode`: one container, its children already decoded."""
    mark, lines = pairs[0]
    if mark == _SEQ_MARK:
        sequence = _Seq(pairs[1][1])
        sequence.line = lines[0]
        sequence.item_lines = lines[1:]
        if len(sequence.item_lines) != len(sequence):
            raise ValueError("damaged entry")
        return sequence
    if mark != _MAP_MARK:
        raise ValueError("damaged entry")
    mapping = _Map(pairs[1:])
    mapping.line = lines[0]
    mapping.key_lines = dict(zip(mapping, lines[1:], strict=True))
    return mapping


def _decode(body: bytes) -> Any:
    """The inverse of :func:`_encode`, from the JSON text."""
    return json.loads(body, object_pairs_hook=_decode_object)


def _line_of(root: Any, path: Iterable[Any]) -> int | None:
    """The line of the deepest node along ``path`` that knows its line."""
    line = getattr(root, "line", None)
    node = root
    for step in path:
        if isinstance(node, _Map) and step in node:
            line = node.key_lines.get(step, line)
            node = node[step]
        elif isinstance(node, _Seq) and isinstance(step, int) and step < len(node):
            line = node.item_lines[step]
            node = node[step]
        else:
            break
        line = getattr(node, "line", line)
    return line


def _plain(value: Any) -> Any:
    """Line-tracking containers to plain dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- the model of a rule


@attrs.frozen
class Ref:
    """The value of attribute ``attr`` of the fact bound as ``binding`` (plus ``add``)."""

    binding: str
    attr: str
    add: int = 0

    def __str__(self) -> str:
        return f"{self.binding}.{self.attr}" + (f" + {self.add}" if self.add else "")


Value = str | int | bool | Ref
Op = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists"]


@attrs.frozen
class Condition:
    """A test on one attribute of a fact."""

    attr: str
    op: Op
    value: Value | tuple[str | int | bool, ...]


@attrs.frozen
class AnyOf:
    """Alternatives: at least one group of conditions must hold."""

    alternatives: tuple[tuple[Condition | AnyOf, ...], ...]


Test = Condition | AnyOf


def iter_conditions(tests: Iterable[Test]) -> Iterator[Condition]:
    """Every condition in a pattern's tests, those inside ``any`` alternatives included."""
    for test in tests:
        if isinstance(test, AnyOf):
            for alternative in test.alternatives:
                yield from iter_conditions(alternative)
        else:
            yield test


@attrs.frozen
class Pattern:
    """One fact a rule needs, bound to a name so later patterns and fields can refer to it."""

    bind: str
    fact: str
    tests: tuple[Test, ...] = ()


@attrs.frozen
class Unless:
    """A fact whose presence, once all rules have run, holds a recommendation back."""

    fact: str
    tests: tuple[Test, ...] = ()


@attrs.frozen
class Derive:
    """Conclude a new fact."""

    fact: str
    set: Mapping[str, Value] = attrs.field(factory=dict)


@attrs.frozen
class Recommend:
    """Recommend a kind, with its title, detail, priority and kind-specific fields."""

    kind: str
    priority: Priority
    title: str
    detail: str
    fields: Mapping[str, Value | tuple[str, ...]] = attrs.field(factory=dict)


@attrs.frozen
class Example:
    """A case that must (or must not) fire the rule, with the line it is on."""

    case: Mapping[str, Any]
    line: int | None


@attrs.frozen
class Rule:
    """A checked rule with its review metadata."""

    id: str
    title: str
    status: Status
    version: int
    guidance: tuple[str, ...]
    sources: tuple[SourceRef, ...]
    last_reviewed: str
    rationale: str
    when: tuple[Pattern, ...]
    then: Derive | Recommend
    unless: tuple[Unless, ...] = ()
    evidence: tuple[str, ...] = ()
    tensions: tuple[str, ...] = ()
    fires: tuple[Example, ...] = ()
    silent: tuple[Example, ...] = ()
    file: str = ""
    line: int | None = None
    topic: str | None = None

    @property
    def derives(self) -> str | None:
        """The fact type this rule derives, if it derives one."""
        return self.then.fact if isinstance(self.then, Derive) else None

    @property
    def recommends(self) -> str | None:
        """The recommendation kind this rule produces, if any."""
        return self.then.kind if isinstance(self.then, Recommend) else None

    @property
    def consumes(self) -> tuple[str, ...]:
        """The fact types this rule's patterns match."""
        return tuple(dict.fromkeys(p.fact for p in self.when))


@attrs.frozen
class DerivedFactType:
    """A fact type rules can derive, with its attributes' domains."""

    name: str
    description: str
    attributes: Mapping[str, Domain]


@attrs.frozen
class Document:
    """A source document and its sections."""

    file: str
    title: str
    dated: str | None
    sections: tuple[str, ...]


@attrs.frozen
class GuidanceItem:
    """A piece of guidance (Gnn) in the project's own words."""

    id: str
    summary: str
    sources: tuple[str, ...]
    area: str | None = None


@attrs.frozen
class Tension:
    """A disagreement between the sources and how the rules resolve it."""

    id: str
    summary: str
    sources: tuple[str, ...]
    resolution: str
    rules: tuple[str, ...] = ()


@attrs.frozen
class Coverage:
    """A declared coverage requirement, checked by ``secondopinion verify``.

    Every case that matches ``when`` (patterns as in a rule) must get the
    ``requires_kinds``: all of them (``mode="all"``) or at least one
    (``mode="any"``).
    """

    id: str
    description: str
    when: tuple[Pattern, ...]
    requires_kinds: tuple[str, ...]
    mode: Literal["all", "any"] = "all"
    file: str = ""
    line: int | None = None


@attrs.frozen
class Monotonicity:
    """A declared monotonicity requirement, checked by ``secondopinion verify``.

    As ``fact.attr`` rises along ``order`` (the other facts of the case
    unchanged), none of ``keeps_kinds`` that a case gets may disappear.
    ``order`` lists the values of a choice attribute from lowest to highest,
    or is ``"increasing"`` or ``"decreasing"`` for a number attribute.
    """

    id: str
    description: str
    fact: str
    attr: str
    order: tuple[str, ...] | Literal["increasing", "decreasing"]
    keeps_kinds: tuple[str, ...]
    file: str = ""
    line: int | None = None

    @property
    def attribute(self) -> str:
        """The attribute as written in the rule file, such as ``diagnosis.seriousness``."""
        return f"{self.fact}.{self.attr}"


# --------------------------------------------------------------------------- loading


@cache
def rules_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the rule file format."""
    text = resources.files("secondopinion").joinpath("schemas/rules.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema  # only on a cache miss: it takes a tenth of a second to import

    return jsonschema.Draft202012Validator(rules_schema())


def default_rules_path() -> Path:
    """Where the shipped rule files are: inside the wheel, or ``rules/`` in a source checkout."""
    packaged = Path(str(resources.files("secondopinion"))) / "_rules"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "rules"


def _yaml_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


class _Collector:
    """Gathers problems while a set of files is checked."""

    def __init__(self) -> None:
        self.problems: list[RuleProblem] = []

    def add(self, file: str, line: int | None, rule_id: str | None, message: str) -> None:
        self.problems.append(RuleProblem(file, line, rule_id, message))


def _read(file: Path, display: str, out: _Collector) -> _Map | None:
    from .limits import MAX_RULE_FILE_BYTES  # limits imports this module

    try:
        with file.open("rb") as stream:  # bounded: a huge file, or /dev/zero, is never read whole
            raw = stream.read(MAX_RULE_FILE_BYTES + 1)
    except OSError as exc:
        out.add(display, None, None, f"cannot read file ({exc.strerror or 'error'})")
        return None
    if len(raw) > MAX_RULE_FILE_BYTES:
        out.add(display, None, None, f"file is larger than {MAX_RULE_FILE_BYTES} bytes (the limit for one rule file)")
        return None
    cached = rulecache.load(raw)
    if cached is not None:
        try:
            data = _decode(cached)
        except (IndexError, TypeError, ValueError, RecursionError):
            data = None  # not an entry this code wrote: parse the file
        if isinstance(data, _Map):
            return data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        out.add(display, line, None, "not valid UTF-8 text")
        return None
    try:
        data = _parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = mark.line + 1 if mark else None
        out.add(display, at, None, f"YAML syntax error: {exc.problem or exc.context}")
        return None
    except yaml.YAMLError as exc:
        out.add(display, None, None, f"YAML error: {type(exc).__name__}")
        return None
    except RecursionError:
        out.add(display, None, None, "YAML nested too deeply")
        return None
    if data is None:
        out.add(display, 1, None, "the file is empty")
        return None
    if not isinstance(data, _Map):
        out.add(display, getattr(data, "line", 1), None, "the top level must be a mapping")
        return None
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        for error in errors:
            path: list[Any] = list(error.absolute_path)
            rule_id = _rule_id_at(data, path)
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                known = set(error.schema.get("properties", {}))
                for key in sorted(k for k in error.instance if k not in known):
                    where = "/".join(map(str, path)) or "(top level)"
                    out.add(display, _line_of(data, [*path, key]), rule_id, f"unknown key {key!r} at {where}")
                continue
            out.add(display, _line_of(data, path), rule_id, _schema_message(error))
        return None
    try:
        payload = _encode(data)
    except TypeError:
        return data  # a value JSON cannot hold: read from the file every time
    rulecache.store(raw, payload)
    return data


def _rule_id_at(data: Any, path: Sequence[Any]) -> str | None:
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
        rules = data.get("rules")
        if isinstance(rules, list) and path[1] < len(rules) and isinstance(rules[path[1]], dict):
            rid = rules[path[1]].get("id")
            return rid if isinstance(rid, str) else None
    return None


def _schema_message(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "oneOf":
        return f"invalid value at {where}: not a value, a list of values, a reference or one operator"
    message = error.message if len(error.message) <= 300 else error.message[:300] + " ..."
    return f"invalid at {where}: {message}"


@attrs.frozen
class Rulebook:
    """A checked set of rules with the vocabulary and sources they use.

    Build one with :meth:`load` (the shipped rules, plus any extra packs).
    """

    rules: tuple[Rule, ...]
    derived_types: Mapping[str, DerivedFactType]
    documents: Mapping[str, Document]
    guidance: Mapping[str, GuidanceItem]
    evidence: Mapping[str, Evidence]
    tensions: Mapping[str, Tension]
    incompatible_kinds: tuple[tuple[str, str], ...] = ()
    coverage: tuple[Coverage, ...] = ()
    monotonicity: tuple[Monotonicity, ...] = ()

    @classmethod
    def load(cls, *extra: str | Path, shipped: bool = True) -> Rulebook:
        """Load the shipped rules (unless ``shipped=False``) and the extra files or folders.

        Raises :class:`RuleFileError` listing every problem found.
        """
        paths: list[str | Path] = [default_rules_path()] if shipped else []
        paths.extend(extra)
        return _build(_yaml_files(paths))

    @property
    def active(self) -> tuple[Rule, ...]:
        """The rules with status ``active``."""
        return tuple(r for r in self.rules if r.status == "active")

    def rule(self, rule_id: str) -> Rule:
        """A rule by id (``KeyError`` if there is none)."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def rules_for(self, rule_ids: Iterable[str]) -> list[Rule]:
        """The rules with these ids, in that order; ids this rulebook does not hold are skipped."""
        by_id = {r.id: r for r in self.rules}
        return [by_id[i] for i in rule_ids if i in by_id]

    def fact_types(self) -> dict[str, Mapping[str, Domain]]:
        """Every fact type rules may match: the case's and the derived ones."""
        out: dict[str, Mapping[str, Domain]] = dict(case_fact_types())
        out.update({name: t.attributes for name, t in self.derived_types.items()})
        return out

    def producers(self, fact_type: str) -> tuple[Rule, ...]:
        """Active rules deriving this fact type."""
        return tuple(r for r in self.active if r.derives == fact_type)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _build(files: Sequence[Path]) -> Rulebook:
    out = _Collector()
    loaded: list[tuple[str, _Map]] = []
    for path in files:
        display = _display(path)
        data = _read(path, display, out)
        if data is not None:
            loaded.append((display, data))

    documents: dict[str, Document] = {}
    guidance: dict[str, GuidanceItem] = {}
    evidence: dict[str, Evidence] = {}
    tensions: dict[str, Tension] = {}
    derived: dict[str, DerivedFactType] = {}
    incompatible: list[tuple[str, str]] = []
    case_types = case_fact_types()

    for display, data in loaded:
        for i, doc in enumerate(data.get("documents", [])):
            if doc["file"] in documents:
                out.add(display, _line_of(data, ["documents", i]), None, f"document {doc['file']} declared twice")
            documents[doc["file"]] = Document(doc["file"], doc["title"], doc.get("dated"), tuple(doc["sections"]))
        for i, item in enumerate(data.get("guidance", [])):
            if item["id"] in guidance:
                out.add(display, _line_of(data, ["guidance", i]), None, f"guidance {item['id']} declared twice")
            guidance[item["id"]] = GuidanceItem(item["id"], item["summary"], tuple(item["sources"]), item.get("area"))
        for item in data.get("evidence", []):
            evidence[item["id"]] = Evidence(item["id"], item["figure"], tuple(item["sources"]))
        for item in data.get("tensions", []):
            tensions[item["id"]] = Tension(
                item["id"], item["summary"], tuple(item["sources"]), item["resolution"], tuple(item.get("rules", []))
            )
        for i, item in enumerate(data.get("derived_facts", [])):
            line = _line_of(data, ["derived_facts", i])
            name = item["name"]
            if name in derived or name in case_types or name.startswith("_"):
                out.add(display, line, None, f"derived fact {name!r} is declared twice or clashes with a case fact")
                continue
            attributes: dict[str, Domain] = {}
            for attr, domain in item.get("attributes", {}).items():
                attributes[attr] = tuple(domain) if isinstance(domain, list) else str(domain)
            derived[name] = DerivedFactType(name, item["description"], attributes)
        for i, pair in enumerate(data.get("incompatible_kinds", [])):
            for kind in pair:
                if kind not in KINDS:
                    out.add(
                        display,
                        _line_of(data, ["incompatible_kinds", i]),
                        None,
                        f"unknown recommendation kind {kind!r}",
                    )
            incompatible.append((pair[0], pair[1]))

    for display, data in loaded:
        for item in data.get("guidance", []):
            for src in item["sources"]:
                if src not in documents:
                    out.add(display, None, None, f"guidance {item['id']} cites unknown document {src!r}")

    fact_types: dict[str, Mapping[str, Domain]] = dict(case_types)
    fact_types.update({n: t.attributes for n, t in derived.items()})
    checker = _RuleChecker(fact_types, documents, guidance, evidence, tensions, out)
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for display, data in loaded:
        for i, raw in enumerate(data.get("rules", [])):
            rule = checker.rule(display, data, i, raw, data.get("topic"))
            if rule is None:
                continue
            if rule.id in seen:
                out.add(display, rule.line, rule.id, f"duplicate rule id (first defined in {seen[rule.id]})")
                continue
            seen[rule.id] = display
            rules.append(rule)

    coverage: list[Coverage] = []
    for display, data in loaded:
        for i, raw in enumerate(data.get("coverage", [])):
            item = checker.coverage(display, data, i, raw)
            if item is not None and any(c.id == item.id for c in coverage):
                out.add(display, item.line, item.id, "coverage requirement declared twice")
            elif item is not None:
                coverage.append(item)

    monotonicity: list[Monotonicity] = []
    for display, data in loaded:
        for i, raw in enumerate(data.get("monotonicity", [])):
            mono = _monotonicity(display, data, i, raw, out)
            if mono is not None and any(m.id == mono.id for m in monotonicity):
                out.add(display, mono.line, mono.id, "monotonicity requirement declared twice")
            elif mono is not None:
                monotonicity.append(mono)

    for tension in tensions.values():
        for rid in tension.rules:
            if rid not in seen:
                out.add("(tensions)", None, rid, f"tension {tension.id} names unknown rule")

    from .limits import check_rules  # limits imports this module

    out.problems.extend(check_rules(rules, derived))
    if out.problems:
        raise RuleFileError(out.problems)
    return Rulebook(
        rules=tuple(rules),
        derived_types=derived,
        documents=documents,
        guidance=guidance,
        evidence=evidence,
        tensions=tensions,
        incompatible_kinds=tuple(incompatible),
        coverage=tuple(coverage),
        monotonicity=tuple(monotonicity),
    )


def _monotonicity(file: str, data: _Map, index: int, raw: Any, out: _Collector) -> Monotonicity | None:
    """Turn one raw monotonicity requirement into a :class:`Monotonicity`, reporting every mistake."""
    base = ["monotonicity", index]
    mid: str = raw["id"]
    before = len(out.problems)

    def problem(path: Sequence[Any], message: str) -> None:
        out.add(file, _line_of(data, [*base, *path]), mid, message)

    fact, _, attr = raw["attribute"].partition(".")
    types = case_fact_types()
    order: tuple[str, ...] | Literal["increasing", "decreasing"] = (
        tuple(raw["order"]) if isinstance(raw["order"], list) else raw["order"]
    )
    if fact in ("opinion", "summary") or fact not in types:
        problem(["attribute"], f"{fact!r} is not an aspect of a case (one of: {', '.join(_ASPECTS)})")
    elif attr not in types[fact]:
        problem(["attribute"], f"unknown attribute {attr!r} of {fact!r}")
    else:
        domain = types[fact][attr]
        if isinstance(domain, tuple):
            if not isinstance(order, tuple):
                problem(["order"], f"{fact}.{attr} is a choice: list its values from lowest to highest")
            else:
                for i, value in enumerate(order):
                    if value not in domain:
                        allowed = ", ".join(domain)
                        problem(["order", i], f"unknown value {value!r} for {fact}.{attr} (one of: {allowed})")
        elif domain == "int":
            if isinstance(order, tuple):
                problem(["order"], f"{fact}.{attr} is a number: its order is 'increasing' or 'decreasing'")
        else:
            problem(["attribute"], f"{fact}.{attr} is free text, which has no order")
    for i, kind in enumerate(raw["keeps_kinds"]):
        if kind not in KINDS:
            problem(["keeps_kinds", i], f"unknown recommendation kind {kind!r}")
    if len(out.problems) > before:
        return None
    return Monotonicity(
        id=mid,
        description=" ".join(raw["description"].split()),
        fact=fact,
        attr=attr,
        order=order,
        keeps_kinds=tuple(raw["keeps_kinds"]),
        file=file,
        line=_line_of(data, base),
    )


_ASPECTS = ("diagnosis", "treatment", "patient", "doctor", "insurance", "records")


class _RuleChecker:
    """Turns one raw rule into a :class:`Rule`, reporting every vocabulary mistake."""

    def __init__(
        self,
        fact_types: Mapping[str, Mapping[str, Domain]],
        documents: Mapping[str, Document],
        guidance: Mapping[str, GuidanceItem],
        evidence: Mapping[str, Evidence],
        tensions: Mapping[str, Tension],
        out: _Collector,
    ) -> None:
        self.fact_types = fact_types
        self.documents = documents
        self.guidance = guidance
        self.evidence = evidence
        self.tensions = tensions
        self.out = out
        self.case_types = frozenset(case_fact_types())  # built once: it resolves the case model's types

    def rule(self, file: str, data: _Map, index: int, raw: Any, topic: str | None) -> Rule | None:
        base = ["rules", index]
        rid: str = raw["id"]
        before = len(self.out.problems)

        def problem(path: Sequence[Any], message: str) -> None:
            self.out.add(file, _line_of(data, [*base, *path]), rid, message)

        for i, gid in enumerate(raw["guidance"]):
            if gid not in self.guidance:
                problem(["guidance", i], f"unknown guidance id {gid!r}")
        for i, eid in enumerate(raw.get("evidence", [])):
            if eid not in self.evidence:
                problem(["evidence", i], f"unknown evidence id {eid!r}")
        for i, tid in enumerate(raw.get("tensions", [])):
            if tid not in self.tensions:
                problem(["tensions", i], f"unknown tension id {tid!r}")
        sources = []
        for i, src in enumerate(raw["sources"]):
            doc = self.documents.get(src["file"])
            if doc is None:
                problem(["sources", i], f"unknown source document {src['file']!r}")
            elif src["section"] not in doc.sections:
                problem(["sources", i], f"document {src['file']} has no section {src['section']!r}")
            sources.append(SourceRef(src["file"], src["section"]))

        bound: dict[str, str] = {}
        patterns = []
        for i, pat in enumerate(raw["when"]):
            fact = pat["fact"]
            if pat["bind"] in bound:
                problem(["when", i, "bind"], f"binding {pat['bind']!r} used twice")
            if fact not in self.fact_types:
                problem(["when", i, "fact"], f"unknown fact type {fact!r}")
                bound[pat["bind"]] = fact
                continue
            tests = self._where(
                pat.get("where", {}), fact, bound, lambda p, m, i=i: problem(["when", i, "where", *p], m)
            )
            patterns.append(Pattern(pat["bind"], fact, tests))
            bound[pat["bind"]] = fact

        unless = []
        for i, item in enumerate(raw.get("unless", [])):
            fact = item["fact"]
            if fact not in self.fact_types:
                problem(["unless", i, "fact"], f"unknown fact type {fact!r}")
                continue
            tests = self._where(
                item.get("where", {}), fact, {}, lambda p, m, i=i: problem(["unless", i, "where", *p], m)
            )
            unless.append(Unless(fact, tests))

        then_raw = raw["then"]
        then: Derive | Recommend
        if "derive" in then_raw:
            if unless:
                problem(
                    ["unless"],
                    "'unless' is only allowed on rules that recommend (derived facts must not depend on absence)",
                )
            spec = then_raw["derive"]
            fact = spec["fact"]
            values: dict[str, Value] = {}
            if fact not in self.fact_types or fact in self.case_types:
                problem(["then", "derive", "fact"], f"{fact!r} is not a declared derived fact type")
            else:
                domains = self.fact_types[fact]
                for attr, val in spec.get("set", {}).items():
                    path = ["then", "derive", "set", attr]
                    if attr not in domains:
                        problem(path, f"unknown attribute {attr!r} of fact {fact!r}")
                        continue
                    values[attr] = self._operand(val, domains[attr], fact, attr, bound, lambda m, p=path: problem(p, m))
                for attr in domains:
                    if attr not in values:
                        problem(["then", "derive"], f"derived fact {fact!r} needs a value for {attr!r}")
            then = Derive(fact, values)
        else:
            spec = then_raw["recommend"]
            kind = spec["kind"]
            fields: dict[str, Value | tuple[str, ...]] = {}
            cls = KINDS.get(kind)
            if cls is None:
                problem(["then", "recommend", "kind"], f"unknown recommendation kind {kind!r}")
            else:
                allowed = {f.name: f for f in cls.specific_fields()}
                for name, val in spec.get("fields", {}).items():
                    path = ["then", "recommend", "fields", name]
                    if name not in allowed:
                        problem(path, f"kind {kind!r} has no field {name!r} (has: {', '.join(allowed) or 'none'})")
                        continue
                    fields[name] = self._field_value(val, allowed[name], bound, lambda m, p=path: problem(p, m))
            then = Recommend(kind, Priority(spec["priority"]), spec["title"], spec["detail"], fields)

        examples = raw.get("examples", {})
        fires = self._examples(examples.get("fires", []), ["examples", "fires"], problem, data, base, file)
        silent = self._examples(examples.get("silent", []), ["examples", "silent"], problem, data, base, file)
        if raw["status"] == "active" and (not fires or not silent):
            problem(["status"], "an active rule needs at least one 'fires' and one 'silent' example")

        if len(self.out.problems) > before:
            return None
        return Rule(
            id=rid,
            title=raw["title"],
            status=raw["status"],
            version=raw["version"],
            guidance=tuple(raw["guidance"]),
            sources=tuple(sources),
            last_reviewed=raw["last_reviewed"],
            rationale=" ".join(raw["rationale"].split()),
            when=tuple(patterns),
            then=then,
            unless=tuple(unless),
            evidence=tuple(raw.get("evidence", [])),
            tensions=tuple(raw.get("tensions", [])),
            fires=fires,
            silent=silent,
            file=file,
            line=_line_of(data, base),
            topic=topic,
        )

    def coverage(self, file: str, data: _Map, index: int, raw: Any) -> Coverage | None:
        """Turn one raw coverage requirement into a :class:`Coverage`, reporting every vocabulary mistake."""
        base = ["coverage", index]
        cid: str = raw["id"]
        before = len(self.out.problems)

        def problem(path: Sequence[Any], message: str) -> None:
            self.out.add(file, _line_of(data, [*base, *path]), cid, message)

        for i, kind in enumerate(raw["requires_kinds"]):
            if kind not in KINDS:
                problem(["requires_kinds", i], f"unknown recommendation kind {kind!r}")
        bound: dict[str, str] = {}
        patterns = []
        for i, pat in enumerate(raw["when"]):
            fact = pat["fact"]
            if pat["bind"] in bound:
                problem(["when", i, "bind"], f"binding {pat['bind']!r} used twice")
            if fact not in self.fact_types:
                problem(["when", i, "fact"], f"unknown fact type {fact!r}")
            else:
                tests = self._where(
                    pat.get("where", {}), fact, bound, lambda p, m, i=i: problem(["when", i, "where", *p], m)
                )
                patterns.append(Pattern(pat["bind"], fact, tests))
            bound[pat["bind"]] = fact
        if len(self.out.problems) > before:
            return None
        return Coverage(
            id=cid,
            description=" ".join(raw["description"].split()),
            when=tuple(patterns),
            requires_kinds=tuple(raw["requires_kinds"]),
            mode=raw.get("mode", "all"),
            file=file,
            line=_line_of(data, base),
        )

    def _examples(
        self, items: Sequence[Any], path: list[Any], problem: Any, data: _Map, base: list[Any], file: str
    ) -> tuple[Example, ...]:
        out = []
        for i, item in enumerate(items):
            try:
                load_case(_plain(item))
            except CaseError as exc:
                problem([*path, i], "example is not a valid case: " + "; ".join(exc.problems))
                continue
            out.append(Example(_plain(item), _line_of(data, [*base, *path, i])))
        return tuple(out)

    def _where(self, where: Mapping[str, Any], fact: str, bound: Mapping[str, str], problem: Any) -> tuple[Test, ...]:
        domains = self.fact_types[fact]
        tests: list[Test] = []
        for attr, spec in where.items():
            if attr == "any":
                alternatives = []
                for i, alt in enumerate(spec):
                    alternatives.append(self._where(alt, fact, bound, lambda p, m, i=i: problem(["any", i, *p], m)))
                tests.append(AnyOf(tuple(alternatives)))
                continue
            if attr not in domains:
                problem([attr], f"unknown attribute {attr!r} of fact {fact!r}")
                continue
            domain = domains[attr]

            def bad(message: str, attr: str = attr) -> None:
                problem([attr], message)

            if isinstance(spec, list):
                values = tuple(self._literal(v, domain, fact, attr, bad) for v in spec)
                tests.append(Condition(attr, "in", values))
            elif isinstance(spec, dict) and "ref" in spec:
                tests.append(Condition(attr, "eq", self._condition_operand(spec, domain, fact, attr, bound, bad)))
            elif isinstance(spec, dict):
                ((op, operand),) = spec.items()
                if op == "exists":
                    tests.append(Condition(attr, "exists", bool(operand)))
                elif op in ("in", "not_in"):
                    values = tuple(self._literal(v, domain, fact, attr, bad) for v in operand)
                    tests.append(Condition(attr, op, values))
                else:
                    if op in ("gt", "gte", "lt", "lte") and domain != "int":
                        bad(f"'{op}' needs a number attribute, {fact}.{attr} is not one")
                    tests.append(Condition(attr, op, self._condition_operand(operand, domain, fact, attr, bound, bad)))
            else:
                tests.append(Condition(attr, "eq", self._literal(spec, domain, fact, attr, bad)))
        return tuple(tests)

    def _literal(self, value: Any, domain: Domain, fact: str, attr: str, bad: Any) -> str | int | bool:
        if domain == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                bad(f"{fact}.{attr} is a number; {value!r} is not")
        elif domain == "text":
            if not isinstance(value, str):
                bad(f"{fact}.{attr} is text; {value!r} is not")
            else:
                return " ".join(value.split()).casefold()
        elif isinstance(value, bool) or value not in domain:
            bad(f"unknown value {value!r} for {fact}.{attr} (one of: {', '.join(domain)})")
        result: str | int | bool = value
        return result

    def _condition_operand(
        self, value: Any, domain: Domain, fact: str, attr: str, bound: Mapping[str, str], bad: Any
    ) -> Value:
        """An operand in a test: like :meth:`_operand`, but the engine cannot add inside a join."""
        if isinstance(value, dict) and value.get("add"):
            bad("'add' is only allowed in values a rule sets, not in tests (the engine cannot add in a join)")
        return self._operand(value, domain, fact, attr, bound, bad)

    def _operand(self, value: Any, domain: Domain, fact: str, attr: str, bound: Mapping[str, str], bad: Any) -> Value:
        if isinstance(value, dict):
            binding, _, other_attr = value["ref"].partition(".")
            if binding not in bound:
                bad(f"reference to {binding!r}, which no earlier pattern binds")
                return Ref(binding, other_attr)
            other_fact = bound[binding]
            other_domains = self.fact_types.get(other_fact, {})
            if other_attr not in other_domains:
                bad(f"reference to unknown attribute {other_fact}.{other_attr}")
            elif not _compatible(other_domains[other_attr], domain):
                bad(f"{other_fact}.{other_attr} cannot be compared with {fact}.{attr}")
            add = int(value.get("add", 0))
            if add and other_domains.get(other_attr) != "int":
                bad("'add' only applies to number attributes")
            return Ref(binding, other_attr, add)
        return self._literal(value, domain, fact, attr, bad)

    def _field_value(
        self, value: Any, field: attrs.Attribute[Any], bound: Mapping[str, str], bad: Any
    ) -> Value | tuple[str, ...]:
        ftype = str(field.type)
        if isinstance(value, list):
            if not ftype.startswith("tuple"):
                bad(f"field {field.name!r} takes a single value, not a list")
            return tuple(value)
        if isinstance(value, dict):
            binding, _, attr = value["ref"].partition(".")
            if binding not in bound:
                bad(f"reference to {binding!r}, which no pattern binds")
            elif attr not in self.fact_types.get(bound[binding], {}):
                bad(f"reference to unknown attribute {bound[binding]}.{attr}")
            elif not _fits(domain := self.fact_types[bound[binding]][attr], ftype):
                bad(f"field {field.name!r} cannot take {bound[binding]}.{attr} (a {_domain_word(domain)})")
            return Ref(binding, attr, int(value.get("add", 0)))
        if ftype.startswith("tuple"):
            bad(f"field {field.name!r} takes a list")
        elif ftype == "bool" and not isinstance(value, bool):
            bad(f"field {field.name!r} takes true or false")
        elif "int" in ftype and (isinstance(value, bool) or not isinstance(value, int)):
            bad(f"field {field.name!r} takes a whole number")
        elif ftype == "str" and not isinstance(value, str):
            bad(f"field {field.name!r} takes text")
        result: Value = value
        return result


def _domain_word(domain: Domain) -> str:
    return "number" if domain == "int" else "word" if isinstance(domain, tuple) else "text"


def _fits(domain: Domain, field_type: str) -> bool:
    """Whether values of an attribute's domain fit a recommendation field of this type."""
    if "int" in field_type:
        return domain == "int"
    if field_type == "bool":
        return False
    return domain != "int"


def _compatible(a: Domain, b: Domain) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return bool(set(a) & set(b))
    return a == b
