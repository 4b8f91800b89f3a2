"""Check that every source reference points at text that is really in its guide.

Rules cite the source documents as ``{file, section}``; ``rules/sources.yaml``
declares each document's sections and lists the documents behind every
guidance item, evidence figure and tension. This module reads the documents
themselves (the plain-text web pages in ``../shared/seeds``) and checks that an
auditor can find each reference there.

A reference is valid when its ``section`` is

* a **heading** of the document (see below), or
* a **short exact quote** from it: 4 to 25 words that occur in the text, at
  word boundaries. Fewer than 4 words that are not a heading are refused: a
  fragment such as "Cancer" or "Who to ask" reads like a section title the
  guide does not have, and does not lead a reader to one place.

and its ``file`` exists in the seeds folder. Both sides are compared after
*folding*: Unicode NFKC; curly quotes to straight ones, hyphen-like marks to
``-`` and en or em dashes to a spaced ``-``;
soft hyphens and zero-width characters dropped; a word split by a hyphen at a
line end (``medi-`` / ``cal``, even across a blank line) joined again; bullet
marks at line starts dropped (``•``, and the ``l`` + tab that a Wingdings
bullet becomes in 003); a missing space after ``.``/``,``/``;``/``:``/``!``/``?``
before a capital restored; case folded; hyphens between two letters dropped
(so "long-term" and "longterm" match); every run of white space made one
space. A heading is compared without its trailing ``.``, ``:``, ``?`` or ``!``.

How headings are found
----------------------
The seeds are web pages saved as text, so their headings are only visible as
layout. The text is first split into *blocks* at blank lines, after joining
hyphenated line ends; a line starting with a bullet mark starts a new *item*
inside its block. Then these count as headings:

1. the **title**: the first block, its lines joined (003's title is split over
   two lines);
2. a **stand-alone line**: a block of at most 12 words that is not a bullet
   item and does not end with ``.``, ``,``, ``;`` or ``:`` ("Next steps",
   "Unclear Diagnosis", "Second Opinions 101", "Tips: What To Do");
3. a **numbered step**: a block starting ``#1)``, ``2)`` and so on, at most 12
   words ("#1) Act quickly." in 001); it also matches without its number;
4. a **run-in heading**: the first sentence of a block or bullet item when it
   ends with a full stop, has at most 10 words, starts with a capital, has no
   comma and no apostrophe, and more text follows it in the same block or item
   ("Talk to your insurance company." and "Surgery." in 000; "Ask your doctor
   for a recommendation." in 003). These are the bold lead-ins of the pages.

Headings that are lost in the saved text (001's "Surgery" and "Cancer" cards,
for instance) are not headings here: cite a quote from the paragraph instead.

Use :func:`check` on a :class:`~secondopinion.Rulebook`, or the command line::

    python -m secondopinion.citations [--seeds PATH] [--rules PATH] [--apply FIXES.yaml]

which prints one finding a line (file:line, rule id, cited file, section, why)
and exits 1 when there is any. ``--apply`` first rewrites the rule files with
:func:`apply_fixes` (line by line, so comments and layout survive).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import yaml

from .rulebook import Rulebook, RuleFileError, default_rules_path

__all__ = [
    "MAX_QUOTE_WORDS",
    "MIN_QUOTE_WORDS",
    "ApplyResult",
    "Finding",
    "FixError",
    "Match",
    "SeedText",
    "apply_fixes",
    "check",
    "default_seeds_path",
    "fold",
    "load_seeds",
    "main",
    "match_section",
    "parse_seed",
]

MAX_QUOTE_WORDS = 25
MIN_QUOTE_WORDS = 4
MAX_HEADING_WORDS = 12
MAX_RUN_IN_WORDS = 10
MAX_RUN_IN_PARAGRAPH_WORDS = 6
MAX_SPLIT_TITLE_WORDS = 6

# --------------------------------------------------------------------------- folding

_QUOTES = {c: "'" for c in "\u2018\u2019\u201a\u201b\u2032\u00b4`"} | {c: '"' for c in "\u201c\u201d\u201e\u201f\u2033"}
# Hyphen-like marks become a hyphen; dashes between words become a spaced hyphen ("haul\u2014for" = "haul - for").
_DASHES = {c: "-" for c in "\u2010\u2011\u2012\u2212\ufe63\uff0d"} | {c: " - " for c in "\u2013\u2014\u2015\ufe58"}
_DROP = {c: None for c in "\u00ad\u200b\u200c\u200d\u2060\ufeff"}
_TYPOGRAPHY = str.maketrans({**_QUOTES, **_DASHES, **_DROP})

_BULLET = re.compile(r"^[ \t]*(?:[\u2022\u25e6\u25aa\u00b7\u2023\u2043*]|l\t)[ \t]*")
# A letter, a hyphen, a line end (maybe blank lines too), then a letter: a word split by a hyphen.
_SPLIT_WORD = re.compile(r"(?<=[^\W\d_])-[ \t]*\n(?:[ \t]*\n)*[ \t]*(?=([^\W\d_]))")
_NO_SPACE = re.compile(r"(?<=[a-z0-9)][.,;:!?])(?=[A-Z])")
_INNER_HYPHEN = re.compile(r"(?<=[^\W\d_])-(?=[^\W\d_])")
_SPACE = re.compile(r"\s+")
_TRAILING = " .:?!"
_NUMBERED = re.compile(r"^#?\d+\)\s+")


def _typography(text: str) -> str:
    """NFKC, straight quotes, plain dashes, no soft hyphens; line structure kept."""
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return text.translate(_TYPOGRAPHY)


def _join_split_words(text: str) -> str:
    """Join words split by a hyphen at a line end: ``medi-`` + ``cal`` -> ``medical``.

    A capital after the break (``non-`` + ``Hodgkin``) keeps its hyphen.
    """

    def joined(m: re.Match[str]) -> str:
        return "" if m.group(1).islower() else "-"

    return _SPLIT_WORD.sub(joined, text)


def _flat(text: str) -> str:
    """The last folding steps, on text whose typography and split words are already folded."""
    text = _NO_SPACE.sub(" ", text)
    text = _INNER_HYPHEN.sub("", text.casefold())
    return _SPACE.sub(" ", text).strip()


def fold(text: str) -> str:
    """Fold ``text`` for comparison (see the module docstring for each step)."""
    text = _join_split_words(_typography(text))
    text = "\n".join(_BULLET.sub("", line) for line in text.split("\n"))
    return _flat(text)


def _key(text: str) -> str:
    """A heading's comparison key: folded, without trailing punctuation."""
    return fold(text).rstrip(_TRAILING)


def _words(text: str) -> int:
    return len(fold(text).split())


# --------------------------------------------------------------------------- seed documents


@attrs.frozen
class SeedText:
    """A source document, folded, with the headings found in it."""

    file: str
    folded: str
    headings: tuple[str, ...]
    heading_keys: frozenset[str]

    def has_quote(self, text: str) -> bool:
        """Whether ``text`` occurs in the document (folded, at word boundaries)."""
        needle = fold(text)
        if not needle:
            return False
        pattern = r"(?<!\w)" + re.escape(needle) + r"(?!\w)"
        return re.search(pattern, self.folded) is not None


_Item = tuple[bool, list[str]]  # (is a bullet item, its lines)


def _text_items(block: str) -> list[_Item]:
    """The items of a block: a line starting with a bullet mark starts a new one."""
    items: list[_Item] = []
    for line in block.split("\n"):
        if not line.strip():
            continue
        bullet = _BULLET.match(line) is not None
        if bullet or not items:
            items.append((bullet, []))
        items[-1][1].append(_SPACE.sub(" ", _BULLET.sub("", line)).strip())
    return items


_FIRST_SENTENCE = re.compile(r"^(.+?\.)\s+(\S.*)$", re.DOTALL)
_NOT_A_LEAD = {"i", "you", "we", "he", "she", "it", "they", "if", "but", "and", "or", "so", "please"}


def _run_in(text: str, bullet: bool) -> str | None:
    """The bold lead-in of a paragraph or bullet item, if it has one."""
    m = _FIRST_SENTENCE.match(text)
    if m is None:
        return None
    sentence = m.group(1)
    words = sentence.split()
    limit = MAX_RUN_IN_WORDS if bullet else MAX_RUN_IN_PARAGRAPH_WORDS
    if len(words) > limit or not sentence[0].isupper() or "," in sentence or "'" in sentence:
        return None
    if words[0].lower() in _NOT_A_LEAD:
        return None
    return sentence


def _ends_sentence(text: str) -> bool:
    return text.rstrip().endswith((".", ",", ";", ":"))


def parse_seed(file: str, text: str) -> SeedText:
    """Fold a document and find its headings (see the module docstring for how)."""
    prepared = _join_split_words(_typography(text))
    blocks = [_text_items(b) for b in re.split(r"\n[ \t]*\n", prepared)]
    blocks = [b for b in blocks if b]
    headings: list[str] = []
    if blocks:
        first = blocks[0][0][1]
        if len(first) > 1 and len(first[0].split()) <= MAX_SPLIT_TITLE_WORDS and not _ends_sentence(first[0]):
            headings.append(f"{first[0]} {first[1]}")
        else:
            headings.append(first[0])
    for items in blocks:
        for bullet, lines in items:
            whole = " ".join(lines)
            n_words = len(whole.split())
            if not bullet and _NUMBERED.match(whole) and n_words <= MAX_HEADING_WORDS:
                headings += [whole, _NUMBERED.sub("", whole)]
            elif (
                not bullet
                and len(lines) == 1
                and n_words <= MAX_HEADING_WORDS
                and not _ends_sentence(whole)
                and all(b for b, other in items if other is not lines)
            ):
                headings.append(whole)
            lead = _run_in(whole, bullet)
            if lead is not None:
                headings.append(lead)
    unique = tuple(dict.fromkeys(h.strip() for h in headings if h.strip()))
    return SeedText(
        file=file,
        folded=fold(text),
        headings=unique,
        heading_keys=frozenset(_key(h) for h in unique),
    )


def load_seeds(folder: Path) -> dict[str, SeedText]:
    """Every ``*.txt`` document in ``folder``, parsed, by file name."""
    return {p.name: parse_seed(p.name, p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.txt"))}


def default_seeds_path() -> Path:
    """``$SECONDOPINION_SEEDS`` if set, else ``../shared/seeds`` beside the repository root."""
    env = os.environ.get("SECONDOPINION_SEEDS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"


# --------------------------------------------------------------------------- matching


@attrs.frozen
class Match:
    """How a section was found in its document (``how`` is None when it was not)."""

    how: Literal["heading", "quote"] | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.how is not None


def _closest(seed: SeedText, section: str) -> str:
    near = difflib.get_close_matches(_key(section), sorted(seed.heading_keys), n=1, cutoff=0.8)
    if not near:
        return ""
    for heading in seed.headings:
        if _key(heading) == near[0]:
            return f"; closest heading: {heading!r}"
    return ""  # pragma: no cover - every key comes from a heading


def match_section(seed: SeedText, section: str) -> Match:
    """Whether ``section`` is a heading of ``seed`` or a short exact quote from it."""
    if not fold(section):
        return Match(None, "the section is empty")
    if _key(section) in seed.heading_keys:
        return Match("heading")
    words = _words(section)
    if words > MAX_QUOTE_WORDS:
        return Match(None, f"not a heading, and a quote may have at most {MAX_QUOTE_WORDS} words (this has {words})")
    found = seed.has_quote(section) or seed.has_quote(section.rstrip(_TRAILING))
    if words < MIN_QUOTE_WORDS:
        where = "its words occur in the text but not as a heading" if found else "not in the text"
        return Match(
            None,
            f"not a heading of {seed.file} ({where}); a quote needs at least {MIN_QUOTE_WORDS} words"
            + _closest(seed, section),
        )
    if found:
        return Match("quote")
    return Match(None, f"neither a heading of {seed.file} nor a quote from it" + _closest(seed, section))


# --------------------------------------------------------------------------- checking a rulebook


@attrs.frozen
class Finding:
    """One reference that does not point at text in its guide."""

    file: str
    line: int | None
    rule_id: str | None
    cited_file: str
    section: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" [{self.rule_id}]" if self.rule_id else ""
        what = f" {self.cited_file}" + (f" / {self.section!r}" if self.section is not None else "")
        return f"{where}{who}{what}: {self.reason}"


_Where = tuple[str, int | None]


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _yaml_files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")))
        elif path.is_file():
            out.append(path)
    return out


def _compose(path: Path) -> yaml.Node | None:
    try:
        return yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key and isinstance(v, yaml.Node):
                return v
    return None


def _items(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _scalar(node: yaml.Node | None) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Lines:
    """Where each reference is written in the rule files (file and line)."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.at: dict[tuple[str, ...], _Where] = {}
        self.registry: str | None = None
        for path in _yaml_files(paths):
            root = _compose(path)
            display = _display(path)
            for rule in _items(_get(root, "rules")):
                rid = _scalar(_get(rule, "id"))
                for j, src in enumerate(_items(_get(rule, "sources"))):
                    self.at[("rule", str(rid), str(j))] = (display, _line(src))
            for doc in _items(_get(root, "documents")):
                self.registry = display
                name = str(_scalar(_get(doc, "file")))
                self.at[("document", name)] = (display, _line(doc))
                title = _get(doc, "title")
                if title is not None:
                    self.at[("title", name)] = (display, _line(title))
                for m, sec in enumerate(_items(_get(doc, "sections"))):
                    self.at[("section", name, str(m))] = (display, _line(sec))
            for group in ("guidance", "evidence", "tensions"):
                for item in _items(_get(root, group)):
                    iid = str(_scalar(_get(item, "id")))
                    for j, src in enumerate(_items(_get(item, "sources"))):
                        self.at[(group, iid, str(j))] = (display, _line(src))

    def get(self, key: tuple[str, ...], fallback: str) -> _Where:
        return self.at.get(key, (self.registry or fallback, None))


def check(
    seeds: Path | Mapping[str, SeedText],
    rulebook: Rulebook | None = None,
    rules_paths: Sequence[Path] | None = None,
) -> list[Finding]:
    """Every reference of ``rulebook`` (the shipped rules by default) that is not in its guide.

    ``seeds`` is the folder of source documents (or documents already parsed
    with :func:`load_seeds`). ``rules_paths`` are the rule files or folders the
    rulebook was loaded from, used only to give each finding its line.
    """
    docs = load_seeds(seeds) if isinstance(seeds, Path) else dict(seeds)
    book = rulebook if rulebook is not None else Rulebook.load()
    lines = _Lines(rules_paths if rules_paths is not None else [default_rules_path()])
    findings: list[Finding] = []

    def missing(where: _Where, rid: str | None, cited: str, section: str | None = None) -> None:
        findings.append(Finding(where[0], where[1], rid, cited, section, "no such document in the seeds folder"))

    for name, doc in book.documents.items():
        seed = docs.get(name)
        if seed is None:
            missing(lines.get(("document", name), "(sources)"), None, name)
            continue
        if _key(doc.title) not in seed.heading_keys:
            where = lines.get(("title", name), "(sources)")
            findings.append(Finding(where[0], where[1], None, name, doc.title, "the title is not the document's title"))
        for m, section in enumerate(doc.sections):
            found = match_section(seed, section)
            if not found.ok:
                where = lines.get(("section", name, str(m)), "(sources)")
                findings.append(Finding(where[0], where[1], None, name, section, found.reason))

    groups: list[tuple[str, Mapping[str, Any]]] = [
        ("guidance", book.guidance),
        ("evidence", book.evidence),
        ("tensions", book.tensions),
    ]
    for group, items in groups:
        for iid, item in items.items():
            for j, cited in enumerate(item.sources):
                if cited not in docs:
                    missing(lines.get((group, iid, str(j)), "(sources)"), iid, cited)

    for rule in book.rules:
        for j, src in enumerate(rule.sources):
            where = lines.get(("rule", rule.id, str(j)), rule.file)
            if where[1] is None:
                where = (rule.file or where[0], rule.line)
            seed = docs.get(src.file)
            if seed is None:
                missing(where, rule.id, src.file, src.section)
                continue
            found = match_section(seed, src.section)
            if not found.ok:
                findings.append(Finding(where[0], where[1], rule.id, src.file, src.section, found.reason))
    return findings


# --------------------------------------------------------------------------- applying fixes


class FixError(ValueError):
    """The fixes file is malformed, or a fix would break a rule file."""


@attrs.frozen
class ApplyResult:
    """What :func:`apply_fixes` changed, and what it could not find (already fixed, or renamed)."""

    applied: tuple[str, ...]
    skipped: tuple[str, ...]
    files: tuple[str, ...]


@attrs.frozen
class _RuleFix:
    rule_id: str
    file: str
    old: str
    new: str


@attrs.frozen
class _Rename:
    file: str
    old: str
    new: str


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FixError(f"{where}: expected a non-empty text")
    return value


def _read_fixes(path: Path) -> tuple[list[_Rename], list[_RuleFix]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FixError(f"{path}: cannot read ({exc.strerror or 'error'})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise FixError(f"{path}{at}: not valid YAML") from None
    if not isinstance(data, dict) or not set(data) <= {"sections", "rules"}:
        raise FixError(f"{path}: expected a mapping with 'sections' and/or 'rules'")
    sections, rules = data.get("sections") or {}, data.get("rules") or {}
    if not isinstance(sections, dict):
        raise FixError(f"{path}: sections: expected a mapping of document files to lists of {{old, new}}")
    if not isinstance(rules, dict):
        raise FixError(f"{path}: rules: expected a mapping of rule ids to lists of {{file, old, new}}")
    renames: list[_Rename] = []
    for doc, entries in sections.items():
        if not isinstance(entries, list):
            raise FixError(f"{path}: sections/{doc}: expected a list of {{old, new}}")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise FixError(f"{path}: sections/{doc}/{i}: expected {{old, new}}")
            where = f"{path}: sections/{doc}/{i}"
            renames.append(
                _Rename(str(doc), _text(entry.get("old"), where + "/old"), _text(entry.get("new"), where + "/new"))
            )
    fixes: list[_RuleFix] = []
    for rid, entries in rules.items():
        if not isinstance(entries, list):
            raise FixError(f"{path}: rules/{rid}: expected a list of {{file, old, new}}")
        for i, entry in enumerate(entries):
            where = f"{path}: rules/{rid}/{i}"
            if not isinstance(entry, dict):
                raise FixError(f"{where}: expected {{file, old, new}}")
            fixes.append(
                _RuleFix(
                    str(rid),
                    _text(entry.get("file"), where + "/file"),
                    _text(entry.get("old"), where + "/old"),
                    _text(entry.get("new"), where + "/new"),
                )
            )
    return renames, fixes


_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9 ]*[A-Za-z0-9]|[A-Za-z]")


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML scalar that is safe in block and flow context."""
    if _PLAIN.fullmatch(text) and text.lower() not in {"yes", "no", "on", "off", "true", "false", "null", "y", "n"}:
        return text
    return json.dumps(text, ensure_ascii=False)


@attrs.define
class _Edit:
    start: int
    end: int
    text: str


def _span_edit(node: yaml.Node, new: str) -> _Edit:
    return _Edit(int(node.start_mark.index), int(node.end_mark.index), _yaml_scalar(new))


def apply_fixes(rules_dir: Path, fixes_path: Path) -> ApplyResult:
    """Rewrite the ``section`` of the references named in ``fixes_path``, in place.

    The fixes file maps rule ids to ``{file, old, new}`` (the rule's source
    on ``file`` whose section is ``old`` becomes ``new``), and may rename
    declared sections of a document in the registry (``sections: {file:
    [{old, new}]}``). Only the text of the section value changes, so comments
    and layout survive; a new section a rule now cites is added to its
    document's ``sections`` list if it is not declared yet. Fixes whose rule
    or old section is not found are skipped and listed (already applied, or
    the rule was renamed). Raises :class:`FixError` on a malformed fixes file
    or if a rewritten file would no longer read back as intended.
    """
    renames, fixes = _read_fixes(fixes_path)
    files = _yaml_files([rules_dir])
    texts = {p: p.read_text(encoding="utf-8") for p in files}
    edits: dict[Path, list[_Edit]] = {p: [] for p in files}
    applied: list[str] = []
    pending_rules = {(f.rule_id, f.file, f.old): f for f in fixes}
    pending_renames = {(r.file, r.old): r for r in renames}
    cited: dict[str, list[str]] = {}
    registries: list[tuple[Path, yaml.Node]] = []

    for path in files:
        root = _compose(path)
        if root is None:
            raise FixError(f"{_display(path)}: cannot read it as YAML")
        for rule in _items(_get(root, "rules")):
            rid = str(_scalar(_get(rule, "id")))
            for src in _items(_get(rule, "sources")):
                doc, sec_node = _scalar(_get(src, "file")), _get(src, "section")
                section = _scalar(sec_node)
                if doc is None or section is None or sec_node is None:
                    continue
                fix = pending_rules.pop((rid, doc, section), None)
                if fix is not None:
                    edits[path].append(_span_edit(sec_node, fix.new))
                    applied.append(f"{rid}: {doc} {section!r} -> {fix.new!r} ({_display(path)}:{_line(sec_node)})")
                    section = fix.new
                cited.setdefault(doc, []).append(section)
        if _get(root, "documents") is not None:
            registries.append((path, root))

    for path, root in registries:
        for doc_node in _items(_get(root, "documents")):
            name = str(_scalar(_get(doc_node, "file")))
            seq = _get(doc_node, "sections")
            nodes = _items(seq)
            declared = {str(_scalar(n)) for n in nodes}
            for sec_node in nodes:
                section = str(_scalar(sec_node))
                rename = pending_renames.pop((name, section), None)
                if rename is None:
                    continue
                if rename.new in declared:
                    edits[path].append(_Edit(*_line_span(texts[path], sec_node), ""))
                else:
                    edits[path].append(_span_edit(sec_node, rename.new))
                declared.discard(section)
                declared.add(rename.new)
                applied.append(f"{name}: declared section {section!r} -> {rename.new!r} ({_display(path)})")
            for section in dict.fromkeys(cited.pop(name, [])):
                if section in declared:
                    continue
                if not isinstance(seq, yaml.SequenceNode) or not nodes or seq.flow_style:
                    raise FixError(
                        f"{_display(path)}: cannot add {section!r} to the sections of {name}; add it by hand"
                    )
                last = nodes[-1]
                start = texts[path].rfind("\n", 0, int(last.start_mark.index)) + 1
                prefix = texts[path][start : int(last.start_mark.index)]
                _, end = _line_span(texts[path], last)
                edits[path].append(_Edit(end, end, f"{prefix}{_yaml_scalar(section)}\n"))
                declared.add(section)
                applied.append(f"{name}: declared new section {section!r} ({_display(path)})")

    changed: list[str] = []
    for path, todo in edits.items():
        if not todo:
            continue
        text = texts[path]
        for edit in sorted(todo, key=lambda e: (e.start, e.end), reverse=True):
            text = text[: edit.start] + edit.text + text[edit.end :]
        try:
            yaml.safe_load(text)
        except yaml.YAMLError:
            raise FixError(f"{_display(path)}: the fixes would make it invalid YAML; nothing was written") from None
        texts[path] = text
        changed.append(str(path))
    for name in changed:
        Path(name).write_text(texts[Path(name)], encoding="utf-8")
    skipped = [f"{f.rule_id}: {f.file} {f.old!r} not found" for f in pending_rules.values()]
    skipped += [f"{r.file}: declared section {r.old!r} not found" for r in pending_renames.values()]
    return ApplyResult(tuple(applied), tuple(skipped), tuple(_display(Path(c)) for c in changed))


def _line_span(text: str, node: yaml.Node) -> tuple[int, int]:
    """The whole line (with its end) that ``node`` is on."""
    start = text.rfind("\n", 0, int(node.start_mark.index)) + 1
    end = text.find("\n", int(node.end_mark.index))
    return start, (len(text) if end < 0 else end + 1)


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m secondopinion.citations``: print every bad reference; 1 if any, 2 on a usage error."""
    parser = argparse.ArgumentParser(
        prog="python -m secondopinion.citations",
        description="Check that every source reference of the rules is a heading of, or a short quote from, its guide.",
    )
    parser.add_argument(
        "--seeds",
        type=Path,
        default=None,
        help="folder of source documents (default: $SECONDOPINION_SEEDS, else ../shared/seeds beside the repository)",
    )
    parser.add_argument("--rules", type=Path, default=None, help="rules folder (default: the shipped rules)")
    parser.add_argument(
        "--apply",
        type=Path,
        default=None,
        metavar="FIXES.yaml",
        help="first rewrite the rule files' sections as the fixes file says",
    )
    args = parser.parse_args(argv)
    seeds: Path = args.seeds if args.seeds is not None else default_seeds_path()
    if not seeds.is_dir():
        print(f"error: seeds folder not found: {seeds} (pass --seeds PATH)", file=sys.stderr)
        return 2
    rules_dir: Path = args.rules if args.rules is not None else default_rules_path()
    if args.apply is not None:
        try:
            result = apply_fixes(rules_dir, args.apply)
        except FixError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for line in result.applied:
            print(f"applied: {line}")
        for line in result.skipped:
            print(f"skipped: {line}")
    try:
        book = Rulebook.load(rules_dir, shipped=False) if args.rules is not None else Rulebook.load()
    except RuleFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    findings = check(seeds, book, [rules_dir])
    for finding in findings:
        print(finding)
    documents = load_seeds(seeds)
    refs = sum(len(r.sources) for r in book.rules) + sum(len(d.sections) for d in book.documents.values())
    print(
        f"{len(findings)} finding(s) in {refs} references ({len(book.rules)} rules, {len(documents)} documents)",
        file=sys.stderr,
    )
    return 1 if findings else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
