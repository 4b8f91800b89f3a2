"""The on-disk cache of parsed rule files (secondopinion/rulecache.py) and the libyaml fast path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from secondopinion import rulebook as rulebook_module
from secondopinion import rulecache
from secondopinion.rulebook import Rulebook, RuleFileError, default_rules_path

PACKS = Path(__file__).parent / "packs"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty cache folder for this test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(rulecache.CACHE_DIR_ENV, str(folder))
    monkeypatch.delenv(rulecache.NO_CACHE_ENV, raising=False)
    return folder


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    """A copy of the shipped rules the test may edit."""
    folder = tmp_path / "rules"
    shutil.copytree(default_rules_path(), folder)
    return folder


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.json")}


class _NoParsing(Exception):
    pass


def _refuse_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any YAML parse fail, so a load can only succeed from the cache."""

    def refuse(text: str) -> None:
        raise _NoParsing

    monkeypatch.setattr(rulebook_module, "_parse", refuse)


def test_a_second_load_reads_the_cache_and_gives_the_same_rulebook(
    cache: Path, pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Rulebook.load(pack, shipped=False)
    files = sorted(pack.glob("*.yaml"))
    assert len(_entries(cache)) == len(files)
    _refuse_parsing(monkeypatch)
    second = Rulebook.load(pack, shipped=False)
    assert second == first
    assert [r.line for r in second.rules] == [r.line for r in first.rules]
    assert [e.line for r in second.rules for e in r.fires] == [e.line for r in first.rules for e in r.fires]


def test_the_cache_is_rebuilt_when_a_rule_file_changes(
    cache: Path, pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = Rulebook.load(pack, shipped=False)
    entries_before = _entries(cache)
    target = pack / "20-timing.yaml"
    rule = next(r for r in before.rules if r.file.endswith("20-timing.yaml"))
    text = target.read_text(encoding="utf-8")
    assert text.count(f"title: {rule.title}") == 1
    target.write_text(text.replace(f"title: {rule.title}", "title: A title changed for the cache test"), "utf-8")

    after = Rulebook.load(pack, shipped=False)
    assert after.rule(rule.id).title == "A title changed for the cache test"
    new_entries = _entries(cache) - entries_before
    assert len(new_entries) == 1  # only the changed file was parsed and stored again
    _refuse_parsing(monkeypatch)
    assert Rulebook.load(pack, shipped=False).rule(rule.id).title == "A title changed for the cache test"


def _tamper(entry: Path, old: str, new: str) -> None:
    content = entry.read_bytes()
    assert old.encode() in content
    entry.write_bytes(content.replace(old.encode(), new.encode(), 1))


def test_a_tampered_entry_is_ignored_and_replaced(cache: Path, pack: Path) -> None:
    before = Rulebook.load(pack, shipped=False)
    rule = before.rules[0]
    source = next(pack.glob(Path(rule.file).name))
    entry = cache / f"{rulecache.entry_key(source.read_bytes())}.json"
    _tamper(entry, rule.title, "Tampered title")

    assert rulecache.load(source.read_bytes()) is None  # its digest no longer matches
    again = Rulebook.load(pack, shipped=False)
    assert again.rule(rule.id).title == rule.title
    assert rulecache.load(source.read_bytes()) is not None  # written again from the file
    assert b"Tampered title" not in entry.read_bytes()


def test_an_entry_under_another_key_is_ignored(cache: Path, pack: Path) -> None:
    """A consistent entry copied under the name of another file's key is not trusted."""
    before = Rulebook.load(pack, shipped=False)
    timing, records = pack / "20-timing.yaml", pack / "50-records.yaml"
    timing_entry = cache / f"{rulecache.entry_key(timing.read_bytes())}.json"
    records_entry = cache / f"{rulecache.entry_key(records.read_bytes())}.json"
    shutil.copyfile(timing_entry, records_entry)
    assert rulecache.load(records.read_bytes()) is None
    assert Rulebook.load(pack, shipped=False) == before


def test_a_damaged_or_foreign_entry_is_ignored(cache: Path, pack: Path) -> None:
    before = Rulebook.load(pack, shipped=False)
    source = pack / "20-timing.yaml"
    raw = source.read_bytes()
    entry = cache / f"{rulecache.entry_key(raw)}.json"
    for content in (b"", b"not json\n{}", entry.read_bytes()[:100]):
        entry.write_bytes(content)
        assert rulecache.load(raw) is None
        assert Rulebook.load(pack, shipped=False) == before
    # A well-formed entry whose payload is not what the loader writes: parsed from the file instead.
    body = json.dumps([1, 2, 3]).encode()
    header = json.dumps({"format": rulecache.FORMAT, "key": rulecache.entry_key(raw), "sha256": _sha(body)})
    entry.write_bytes(header.encode() + b"\n" + body)
    assert rulecache.load(raw) == body
    assert Rulebook.load(pack, shipped=False) == before


def _sha(body: bytes) -> str:
    import hashlib

    return hashlib.sha256(body).hexdigest()


def test_the_key_depends_on_the_package_version(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = b"rules: []\n"
    key = rulecache.entry_key(raw)
    rulecache._salt.cache_clear()
    monkeypatch.setattr("secondopinion.__version__", "99.0.0")
    try:
        assert rulecache.entry_key(raw) != key
    finally:
        rulecache._salt.cache_clear()
    assert rulecache.entry_key(raw + b"\n") != key


def test_no_cache_when_turned_off(tmp_path: Path, pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cache"
    monkeypatch.setenv(rulecache.CACHE_DIR_ENV, str(folder))
    monkeypatch.setenv(rulecache.NO_CACHE_ENV, "1")
    Rulebook.load(pack, shipped=False)
    assert not folder.exists()


def test_an_unwritable_cache_folder_does_not_stop_loading(
    tmp_path: Path, pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(rulecache.CACHE_DIR_ENV, str(blocker / "cache"))
    assert len(Rulebook.load(pack, shipped=False).rules) > 0


def test_files_failing_the_schema_are_never_cached(cache: Path, pack: Path) -> None:
    target = pack / "20-timing.yaml"
    target.write_text(target.read_text(encoding="utf-8") + "\nunknown_top_level_key: 1\n", "utf-8")
    with pytest.raises(RuleFileError) as first:
        Rulebook.load(pack, shipped=False)
    assert rulecache.load(target.read_bytes()) is None
    with pytest.raises(RuleFileError) as second:
        Rulebook.load(pack, shipped=False)
    assert second.value.problems == first.value.problems


def test_vocabulary_problems_are_reported_alike_from_the_cache(
    cache: Path, pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schema-valid file is cached, but the vocabulary checks run on every load, with the same lines."""
    target = pack / "20-timing.yaml"
    text = target.read_text(encoding="utf-8")
    assert "fact: treatment" in text
    target.write_text(text.replace("fact: treatment", "fact: no_such_fact", 1), "utf-8")
    with pytest.raises(RuleFileError) as first:
        Rulebook.load(pack, shipped=False)
    assert rulecache.load(target.read_bytes()) is not None
    _refuse_parsing(monkeypatch)
    with pytest.raises(RuleFileError) as second:
        Rulebook.load(pack, shipped=False)
    assert second.value.problems == first.value.problems
    assert any("no_such_fact" in p.message and p.line for p in second.value.problems)


def test_clear_deletes_every_entry(cache: Path, pack: Path) -> None:
    Rulebook.load(pack, shipped=False)
    count = len(_entries(cache))
    assert count > 0
    assert rulecache.clear() == count
    assert _entries(cache) == set()


# --------------------------------------------------------------------------- the libyaml fast path


def test_libyaml_and_the_pure_python_loader_agree_on_every_shipped_file() -> None:
    """Same values and the same line for every node, so error reports do not depend on the path taken."""
    files = sorted(default_rules_path().glob("*.yaml"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        fast = yaml.load(text, Loader=rulebook_module._FastLoader)
        slow = yaml.load(text, Loader=rulebook_module._Loader)
        assert rulebook_module._encode(fast) == rulebook_module._encode(slow), path.name


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [1, 2]\nb: *x\n",  # an alias
        "a: yes\nb: 2026-01-01\nc: on\n",  # words and dates stay text
        "a: 1\na: 2\n",  # a duplicate key
        "a: [1, 2\n",  # a syntax error
    ],
)
def test_the_fast_path_behaves_like_the_line_tracking_loader(text: str) -> None:
    try:
        expected: object = rulebook_module._encode(yaml.load(text, Loader=rulebook_module._Loader))
    except yaml.YAMLError as exc:
        expected = (type(exc), str(exc))
    try:
        got: object = rulebook_module._encode(rulebook_module._parse(text))
    except yaml.YAMLError as exc:
        got = (type(exc), str(exc))
    assert got == expected


def test_the_encoding_keeps_lines_and_refuses_keys_it_cannot_mark() -> None:
    data = rulebook_module._parse("top:\n  - a: 1\n    b: [x, y]\n  - 2\n")
    again = rulebook_module._decode(json.dumps(rulebook_module._encode(data)).encode())
    assert again == data
    assert rulebook_module._line_of(again, ["top", 0, "b"]) == 3
    assert rulebook_module._line_of(again, ["top", 1]) == 4
    with pytest.raises(TypeError):
        rulebook_module._encode(rulebook_module._parse('"\\x01odd": 1\n'))
