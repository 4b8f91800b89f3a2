"""On-disk cache of checked rule files, so a command starts without parsing YAML.

Parsing the shipped rule files with PyYAML and checking them against the JSON
Schema takes most of a cold start. Once a file has been read and has passed
the schema, its parsed content (with the line of every node, for error
reports) is written here as JSON; the next process reads that instead.

Safety:

* An entry is found by a key: the SHA-256 of the rule file's bytes together
  with the package version, the cache format, the rule file schema and the
  loader's own source. Change any of them and the old entry is never used.
* The entry's first line names its key and the SHA-256 of the rest of the
  file; an entry whose key or digest does not match is ignored (and replaced).
* JSON only: nothing in the cache is ever executed or unpickled.
* Only files that parse and pass the schema are cached; YAML and schema
  errors always come from parsing the file itself. The vocabulary checks
  (fact types, kinds, sources, examples) run on every load, cached or not.
* Writes go to a temporary file that is renamed into place, so processes
  running side by side never see half an entry. Any error reading or writing
  the cache is ignored: the rule files are then parsed as without a cache.

The folder is the platform's user cache folder (``platformdirs``), e.g.
``~/.cache/secondopinion/rules`` on Linux; it is safe to delete at any time.
Set ``SECONDOPINION_CACHE_DIR`` to use another folder, or
``SECONDOPINION_NO_CACHE=1`` to neither read nor write one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["CACHE_DIR_ENV", "FORMAT", "NO_CACHE_ENV", "cache_dir", "clear", "entry_key", "load", "store"]

CACHE_DIR_ENV = "SECONDOPINION_CACHE_DIR"
"""Environment variable: the folder to cache in, instead of the user cache folder."""

NO_CACHE_ENV = "SECONDOPINION_NO_CACHE"
"""Environment variable: set to ``1`` to turn the cache off."""

FORMAT = 1
"""Version of the entry layout; part of every key."""

_SUFFIX = ".json"


def cache_dir() -> Path | None:
    """The cache folder, or ``None`` when the cache is turned off."""
    if os.environ.get(NO_CACHE_ENV, "").strip() not in ("", "0"):
        return None
    chosen = os.environ.get(CACHE_DIR_ENV, "").strip()
    if chosen:
        return Path(chosen)
    import platformdirs

    return Path(platformdirs.user_cache_dir("secondopinion", appauthor=False)) / "rules"


@cache
def _salt() -> bytes:
    """What, besides a file's bytes, decides how it parses: version, format, schema, loader."""
    from . import __version__

    package = resources.files("secondopinion")
    digest = hashlib.sha256()
    digest.update(f"secondopinion {__version__} format {FORMAT}\n".encode())
    for name in ("schemas/rules.schema.json", "rulebook.py", "rulecache.py"):
        try:
            digest.update(hashlib.sha256(package.joinpath(name).read_bytes()).digest())
        except OSError:  # e.g. a zipped install without sources: the version still counts
            digest.update(name.encode())
    return digest.digest()


def entry_key(raw: bytes) -> str:
    """The cache key of a rule file's bytes (hex SHA-256)."""
    return hashlib.sha256(_salt() + hashlib.sha256(raw).digest()).hexdigest()


def _entry_path(folder: Path, key: str) -> Path:
    return folder / f"{key}{_SUFFIX}"


def load(raw: bytes) -> bytes | None:
    """The cached payload (JSON text) stored for these file bytes, or ``None``.

    ``None`` also when the entry's key or digest does not check out. The caller
    parses the text (with its own hooks).
    """
    folder = cache_dir()
    if folder is None:
        return None
    key = entry_key(raw)
    try:
        content = _entry_path(folder, key).read_bytes()
    except OSError:
        return None
    header, _, body = content.partition(b"\n")
    try:
        meta = json.loads(header)
    except ValueError:  # JSON or UTF-8 errors: a damaged entry
        return None
    if not isinstance(meta, dict) or meta.get("key") != key or meta.get("format") != FORMAT:
        return None
    if meta.get("sha256") != hashlib.sha256(body).hexdigest():
        return None
    return body


def store(raw: bytes, payload: Any) -> bool:
    """Cache ``payload`` (JSON-serialisable) for these file bytes; whether it was written.

    Best effort: an unwritable folder or a value JSON cannot hold only means no entry.
    """
    folder = cache_dir()
    if folder is None:
        return False
    key = entry_key(raw)
    try:
        body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError):
        return False
    header = json.dumps({"format": FORMAT, "key": key, "sha256": hashlib.sha256(body).hexdigest()}).encode()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=_SUFFIX, dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(header + b"\n" + body)
            os.replace(temporary, _entry_path(folder, key))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError:
        return False
    return True


def clear() -> int:
    """Delete every cache entry; the number deleted."""
    folder = cache_dir()
    if folder is None or not folder.is_dir():
        return 0
    count = 0
    for path in folder.glob(f"*{_SUFFIX}"):
        with contextlib.suppress(OSError):
            path.unlink()
            count += 1
    return count
