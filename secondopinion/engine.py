"""Adapter around durable-rules 2.0.28: the only module of the project that imports ``durable``.

The rest of the project hands this module a set of durable-rules JSON rule
definitions plus one Python function per deriving rule, and gets back, for
each complete set of case facts, an immutable :class:`SessionResult`: which
rules fired on which facts, and which facts were derived.  Everything that is
fragile about durable-rules stays in here.

Guards (numbers refer to /work/shared/ENGINE-NOTES.md; ``A``-letters are
hazards found while writing this adapter, see below):

1.  Each :class:`Engine` owns a private ``durable.engine.Host`` subclass whose
    ``_run`` does nothing, so no timer threads run (they race ``delete_state``).
2.  Every session is opened by asserting an internal ``__session__`` fact *on
    its own*; the internal rule ``__open`` fires on it, so an action has always
    run before the session is deleted (``delete_state`` segfaults otherwise).
3.  The session is always deleted in a ``finally`` block (1,024 live sessions max).
4.  One live session at a time per Engine, under the Engine's lock, so sid hash
    collisions (``user-129599`` / ``user-732382``) cannot mix sessions.  Sids come
    from an injectable ``sid_factory`` and must match ``[A-Za-z0-9_.:-]{1,64}``
    (durable builds JSON from the sid without escaping it).
5.  Derived facts are de-duplicated by content (canonical JSON of type and
    attributes); a repeated derivation is recorded, not re-asserted.  Input facts
    are identified by their ``fid``: a repeated fid is refused.  Facts with
    different fids are different facts even when otherwise equal (the fid is part
    of the content durable sees, so it never reports them as "observed").
6.  An internal sink rule joins every fact type named in a pattern with a
    never-asserted ``__never__`` fact, so every such fact is "handled".
    Facts whose type no pattern names are *not sent to durable* (they can match
    nothing) but are still part of ``SessionResult.facts``; ``Engine.fact_types``
    lets callers check a case against a rule set.  durable's
    ``MessageNotHandledException`` / ``MessageObservedException`` embed the fact's
    JSON (patient data) in their arguments: they are replaced by a plain
    :class:`EngineError` that has neither cause nor context.
7.  Actions are one-parameter closures (durable treats a two-parameter action,
    *including one with a default argument*, as asynchronous and drops its
    results).  They catch every exception themselves; the first one is re-raised
    after the engine call as :class:`ActionError`.  A state carrying
    ``exception`` or a call that returns without completing its actions (an
    action that ran longer than durable's 10 s lease) is an :class:`EngineError`.
8.  No retraction ever; one session per :meth:`Engine.run` from a complete fact set.
9.  Every pattern must constrain ``type`` by equality, so no rule can match
    durable's session-state fact.
10. One ``threading.Lock`` per Engine around the whole session.
11. ``durable.engine._unix_now`` (deprecated ``utcfromtimestamp`` on 3.12+) is
    replaced at import by ``time.monotonic``; it only measures relative 10 s leases.
12. Python 3.13: the stock durable-rules 2.0.28 build fails at import with
    ``undefined symbol: PyEval_CallObject`` (fixed upstream, never released).
    Build it with
    ``CPPFLAGS="-DPyEval_CallObject=PyObject_CallObject" pip install
    --no-binary durable-rules durable-rules==2.0.28`` (``CFLAGS`` is ignored by
    its setup.py).  Python 3.10 to 3.12 install the stock sdist.
13. ``pri`` is stored unsigned (a negative one fires last): ``pri`` must be an
    int in ``[0, 2**31)``; lower fires first.
14. ``register_rulesets`` mutates its argument: it always gets a deep copy; each
    Engine registers under its own unique ruleset name on its own Host.
15. Speed: durable writes the session state back (``update_state``, which
    asserts it through the whole network again) after *every* action, even when
    the action left it unchanged; that was about a fifth of ``advise()``.  Each
    Engine's ruleset runs its actions with :func:`_flush_actions`, the same
    start / run / complete protocol, which writes the state after the first
    action of every call (so the ``__open`` action's session is written exactly
    as before, hazard 2) and afterwards only when an action changed it (e.g.
    durable recorded an ``exception`` in it, hazard 7).  Lease expiry and
    action errors are handled as durable handles them.  The same ruleset also
    reads and writes durable's JSON with orjson instead of ``json`` (facts
    asserted, messages read, state written: about a sixth of ``Engine.run``).
    For checked facts orjson writes the same values (A2's float range included)
    but no space after ``,`` and ``:``; sessions on the shipped rules are the
    same with either text (tested), though the layout can change what a join of
    hazard A11 happens to match, which is why such joins are refused.

Hazards found while writing this adapter (durable-rules 2.0.28, CPython 3.11),
each refused with :class:`RulesetError` (rules) or :class:`EngineError` (facts),
or worked around by rewriting the rules durable gets:

A1. A pattern object with several keys, ``{"type": "x", "dx": "a"}``, is
    matched on its *first* key only; the others are silently ignored.  Every
    expression object must have exactly one key (use ``$and``).
A2. A float that JSON writes in exponent notation (``1e-05``, ``1e+16``; i.e.
    ``0 < |x| < 1e-4`` or ``|x| >= 1e16``) segfaults the C parser when asserted
    (also inside a list) and makes ``create_ruleset`` fail.  Such values, NaN,
    infinities and ints outside the signed 64-bit range are refused: callers must
    rescale or round them.
A3. A fact with more than about 250 properties, or a string over 16 MiB,
    segfaults the engine.  Facts are limited to ``MAX_FACT_KEYS`` keys and
    strings to ``MAX_STRING_LENGTH`` characters.
A4. A fact attribute named ``id`` is used by durable as the fact's identity
    (two facts with the same ``id`` are "already observed"); ``sid`` selects the
    session.  Both, and keys starting with ``$``, are refused in facts.
A5. If a durable call fails before any action of a new session ran, deleting
    that session segfaults (hazard 2 again): the ``__session__`` fact is
    therefore asserted in its own call before the case facts.  Should a session
    ever be left undeletable, the Engine refuses further work.
A6. Ruleset names containing ``$state`` or ``$flow`` are turned into state or
    flow charts: Engine names must match ``[A-Za-z0-9_.-]+``.  Binding names
    such as ``m$not`` / ``m$any`` / ``m$all`` are negation and nested
    quantifiers: binding names must be identifiers.
A7. When the *last* join condition (a comparison with another binding's field)
    of an ``$and`` is false, durable's ``reduceExpressionSequence`` scans past
    the end of the expression array for an end marker: it reads uninitialised
    memory and, depending on the heap, segfaults.  An always-true join (``sid``
    equals the first binding's ``sid``) is appended after the last join.
A8. Join conditions that follow a nested ``$and``/``$or`` are silently ignored,
    and an ``$or`` of joins whose last alternative is true overruns like A7.
    ``$and`` lists are flattened; each ``$or`` containing a join is expanded
    into separate durable rules (variants, named ``<rule id>~<n>``, at most
    ``MAX_VARIANTS``); join-free ``$or`` groups (evaluated per fact, correctly)
    are placed after all joins; ``{}`` (true) is simplified away.
A9. A join comparing a missing attribute aborts the whole call (error 311;
    ``null`` on the left and lists give 312).  ``$ex`` conditions for both
    fields are added to the two bindings' patterns (every binding belongs to the
    one rule, so this only drops facts that could never satisfy the join: a
    comparison with a missing attribute is false).  ``None`` values are refused
    (leave absent attributes out) and so are lists in fields used by joins.
A10. A fact that satisfies several alternatives of a ``$or`` activates the rule
    once per alternative; rule variants can match one tuple more than once.
    A rule fires at most once per tuple of matched facts.
A11. A join misses matches, and not the same ones from run to run, when a fact it
    reads was asserted by an action during the session: the fact holding the join,
    the fact it refers to, or the rule's first fact (A7's ``sid`` comparison reads
    it). With two opinions and one derived fact the join matched in about two runs
    of three; between two derived facts, never. Joins on input facts are reliable,
    derived facts later in the rule included. A derived fact of a type some join
    reads stops the run with :class:`EngineError` (``secondopinion.limits`` refuses
    such rules when a rule file is loaded).

Negation (``$not``, ``none``) is refused: durable does not retract an
activation when the negated fact arrives later, so the project evaluates
negation outside the engine.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import durable.engine as _durable  # type: ignore[import-untyped,unused-ignore]
import orjson

__all__ = [
    "MAX_FACT_KEYS",
    "MAX_STRING_LENGTH",
    "MAX_VARIANTS",
    "ActionError",
    "DeriveFn",
    "DerivedFact",
    "Engine",
    "EngineBudgetError",
    "EngineError",
    "Fact",
    "Firing",
    "RulesetError",
    "SessionResult",
]

Fact = dict[str, Any]
"""A flat JSON-like fact: always has ``"type"`` and ``"fid"`` (both ``str``)."""

DeriveFn = Callable[[Mapping[str, Fact]], Mapping[str, Any] | None]
"""Given a rule's bindings (name -> fact) return a new fact ``{"type": ..., ...}``
(without ``fid``/``sid``) or ``None``.  It must not mutate its argument's facts
(it receives copies anyway)."""

MAX_FACT_KEYS = 200
"""Most keys a fact may have (hazard A3: about 250 properties segfault durable)."""

MAX_STRING_LENGTH = 262_144
"""Longest string value, in characters (at most 1 MiB of UTF-8; 16 MiB segfault)."""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_PRI_LIMIT = 2**31

_SESSION_TYPE = "__session__"
_NEVER_TYPE = "__never__"
_OPEN_RULE = "__open"
_SINK_RULE = "__sink"
_RESERVED_FACT_KEYS = frozenset({"sid", "id"})

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RULE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,127}\Z")
_ENGINE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
_SID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}\Z")
_SAFE_DURABLE_MESSAGE = re.compile(r"[A-Za-z ,]{1,80}error code: \d{1,6}\Z")

# Operators durable's JSON dialect accepts inside a pattern that this adapter
# passes through.  "$not" and binding suffixes such as "m$not" are negation
# (refused, see module docstring); "$s" addresses the session state (hazard 9).
_ALLOWED_OPERATORS = frozenset(
    {
        "$and",
        "$or",
        "$eq",
        "$lt",
        "$lte",
        "$gt",
        "$gte",
        "$neq",
        "$ex",
        "$nex",
        "$mt",
        "$imt",
        "$iall",
        "$iany",
        "$add",
        "$sub",
        "$mul",
        "$div",
        "$l",
        "$r",
    }
)


class EngineError(Exception):
    """Base of this module's errors.  Messages name rule ids, fact types, fids
    and attribute names only, never fact values (they are patient data)."""


class ActionError(EngineError):
    """A rule's action failed (its DeriveFn raised or returned an invalid fact).

    ``rule_id`` names the rule; the original exception is ``__cause__``.
    """

    def __init__(self, rule_id: str, message: str | None = None) -> None:
        super().__init__(message or f"action of rule {rule_id!r} raised")
        self.rule_id = rule_id


class EngineBudgetError(EngineError):
    """A run went over its budget of rule firings or of time (``Engine(max_firings=, max_seconds=)``).

    The rule set keeps deriving, or the case gives it too much to match; the run is
    ended and nothing of it is returned.
    """


class RulesetError(EngineError):
    """A rule set this adapter refuses (hazards 9, 13, A1, A2, A6, A8, negation)."""


@attrs.frozen
class Firing:
    """One firing of a (non-internal) rule: ``matched`` maps each binding name,
    in sorted order, to the fid of the fact it matched."""

    rule_id: str
    matched: Mapping[str, str]


@attrs.frozen
class DerivedFact:
    """A fact derived during a session.

    ``fid`` is ``f"{type}#{n}"`` with ``n`` counting from 1 per type and session.
    ``derivations`` holds every firing that derived this content; the first one
    asserted it, later identical derivations were only recorded (hazard 5).
    """

    fid: str
    type: str
    attributes: Mapping[str, Any]
    derivations: tuple[Firing, ...]


@attrs.frozen
class SessionResult:
    """Outcome of one :meth:`Engine.run`.

    ``firings``: every non-internal rule firing in engine order.
    ``derived``: derived facts in the order first derived.
    ``facts``: the input facts (in input order, including those of types no rule
    names) followed by the derived facts, as ``{"type", "fid", **attributes}``.
    """

    firings: tuple[Firing, ...]
    derived: tuple[DerivedFact, ...]
    facts: tuple[Fact, ...]


# --------------------------------------------------------------------------
# Hazard 11: durable.engine._unix_now calls datetime.utcfromtimestamp, which
# warns on Python 3.12+.  durable only compares its values with each other
# (10 s action leases), so a monotonic clock is an equivalent that never warns
# and is immune to wall-clock and DST jumps.


def _unix_now() -> float:
    """Replacement for ``durable.engine._unix_now``: seconds on a monotonic clock."""
    return time.monotonic()


_durable._unix_now = _unix_now


_native: Any = _durable.durable_rules_engine
"""durable's C extension, as ``durable.engine`` imported it."""


_LEASE_SECONDS = 10
"""durable drops the result of an action that ran longer than this (hazard 9)."""


class _Call:
    """What a plain action gets instead of durable's ``Closure`` (guard 15).

    The same members this adapter's actions (and durable's ``Promise``) use: the matched
    facts as ``_m``, the session state as ``s``, ``assert_fact``, the state handle; the
    lease clock starts when the action starts, as a ``Closure``'s does.
    """

    __slots__ = ("_handle", "_m", "_ruleset", "_start", "_stopped", "s")

    def __init__(self, ruleset: Any, state: Any, message: dict[str, Any], handle: Any) -> None:
        self._ruleset = ruleset
        self.s = state
        self._m = message
        self._handle = handle
        self._start = _durable._unix_now()
        self._stopped = False

    def assert_fact(self, fact: dict[str, Any]) -> None:
        """Assert a fact into the session (the running action's effects follow it)."""
        if "sid" not in fact:
            fact["sid"] = self.s.sid
        self._ruleset.assert_fact(fact)

    def expired(self) -> bool:
        """Whether the action outlived its lease, or the run was stopped (its budget is spent)."""
        return self._stopped or bool(_durable._unix_now() - self._start > _LEASE_SECONDS)


def _flush_actions(
    ruleset: Any,
    state: dict[str, Any],
    result_container: dict[str, Any],
    state_offset: Any,
    complete: Callable[[Any, Any], None],
) -> None:
    """Run a session's pending actions one by one (guard 15); installed on each Engine's ruleset.

    Same contract as durable's ``Ruleset._flush_actions`` in 2.0.28: ``result_container``
    holds the next action's ``{rule: message}`` under ``"message"``; an exception inside an
    action is recorded in the state under ``exception``; ``complete(error, None)`` on
    failure, ``complete(None, state)`` once no action is left, and no call at all when an
    action outlived its lease (the caller sees an unfinished call).  The differences: the
    state is written back only after the first action and when an action changed it, and
    a plain action (one synchronous function, which is what this adapter registers) is
    called directly with a :class:`_Call`; anything else runs through durable's
    ``Promise`` and ``Closure`` as before.
    """
    handle = ruleset._handle
    content = _durable.Content(state)
    written: dict[str, Any] | None = None
    call: _Call | None = None  # one per loop: this adapter's actions keep no reference to it
    while "message" in result_container:
        ((action_name, message),) = result_container.pop("message").items()
        promise = ruleset._actions[action_name]
        if promise._sync and promise._next is None:
            if call is None:
                call = _Call(ruleset, content, message, state_offset)
            else:
                call._m = message
                call._start = _durable._unix_now()  # each action has its own lease
            try:
                promise._func(call)
            except BaseException:
                # As durable records it, but without the text: it could quote fact values.
                state["exception"] = "an action raised"
            if call.expired():
                return  # the lease ran out: durable drops the result
        else:
            closure = _durable.Closure(ruleset._host, ruleset, state, message, state_offset)
            errors: list[Any] = []
            promise.run(closure, errors.append)
            if not errors or closure._has_completed():
                return  # an asynchronous action, or the lease ran out: durable drops the result
            if errors[0]:
                _native.abandon_action(handle, state_offset)
                complete(errors[0], None)
                return
        try:
            if written is None or state != written:
                _native.update_state(handle, _dumps(state))
                written = dict(state)
            following = _native.complete_and_start_action(handle, state_offset)
        except BaseException as exc:
            _native.abandon_action(handle, state_offset)
            complete(exc, None)
            return
        if following:
            result_container["message"] = orjson.loads(following)
        else:
            complete(None, state)


def _dumps(value: Any) -> str:
    """JSON text for durable: the values ``json.dumps(value, ensure_ascii=False)`` writes, compact.

    orjson, about four times faster: on the engine's hot path (every fact asserted, every
    state written). Facts reaching it are checked first (:func:`_check_attributes`): string
    keys, 64-bit integers, floats in [1e-4, 1e16), where both libraries write the same
    numbers; orjson leaves out the spaces after ``,`` and ``:`` (guard 15).
    """
    return orjson.dumps(value).decode()


def _assert_fact(ruleset: Any, fact: dict[str, Any]) -> Any:
    """durable's ``Ruleset.assert_fact`` with :func:`_dumps`; installed on each Engine's ruleset."""
    return ruleset._handle_result(_native.assert_fact(ruleset._handle, _dumps(fact)), fact)


def _assert_facts(ruleset: Any, facts: list[dict[str, Any]]) -> Any:
    """durable's ``Ruleset.assert_facts`` with :func:`_dumps`; installed on each Engine's ruleset."""
    return ruleset._handle_result(_native.assert_facts(ruleset._handle, _dumps(facts)), facts)


def _do_actions(ruleset: Any, state_handle: Any, complete: Callable[[Any, Any], None]) -> None:
    """durable's ``Ruleset.do_actions`` reading durable's JSON with orjson; installed on each Engine's ruleset."""
    try:
        result = _native.start_action_for_state(ruleset._handle, state_handle)
        if not result:
            complete(None, None)
        else:
            message = {"message": orjson.loads(result[1])}
            ruleset._flush_actions(orjson.loads(result[0]), message, state_handle, complete)
    except BaseException as error:
        complete(error, None)


class _Host(_durable.Host):  # type: ignore[misc]
    """A private durable Host: no timer threads (hazard 1); actions by rule id."""

    def __init__(self, actions: Mapping[str, Callable[[Any], None]]) -> None:
        self._actions_by_id = dict(actions)
        super().__init__()

    def _run(self) -> None:
        """Start nothing: durable's dispatch/timer threads race ``delete_state``."""

    def get_action(self, action_name: str) -> Callable[[Any], None]:
        """Return the action bound to ``action_name`` (the rule id)."""
        return self._actions_by_id[action_name]


@attrs.define
class _DerivedRecord:
    """Mutable per-session record of one derived fact (frozen at the end)."""

    fid: str
    type: str
    attributes: dict[str, Any]
    derivations: list[Firing]


@attrs.define
class _Session:
    """Per-session context, set on the Engine while its lock is held."""

    by_fid: dict[str, Fact]
    fact_count: int
    firings: list[Firing] = attrs.Factory(list)
    derived: list[_DerivedRecord] = attrs.Factory(list)
    by_content: dict[tuple[Any, ...], _DerivedRecord] = attrs.Factory(dict)
    per_type: dict[str, int] = attrs.Factory(dict)
    seen: set[tuple[str, ...]] = attrs.Factory(set)
    deadline: float = 0.0
    sid: str = ""
    stopped: bool = False
    """The run was cut short (budget spent, hazard A11): actions still queued are dropped and
    ``failure`` is what the run raises."""
    opened: bool = False
    action_error: tuple[str, BaseException] | None = None
    failure: EngineError | None = None


def _stop_flush(c: Any) -> None:
    """End durable's action loop for this closure now: the pending activations are dropped.

    durable's flush loop runs every queued action (raising in an action does not stop it;
    a budget overrun can leave millions queued).  Marking the closure completed takes
    durable's own lease-expiry path: the loop returns without completing the action and
    the session, deleted next, is never used again. A :class:`_Call` (guard 15's own loop)
    is stopped the same way: the loop returns as for an expired lease.
    """
    if isinstance(c, _Call):
        c._stopped = True
    else:
        c._completed = True


def _value_ok(value: Any) -> bool:
    """Whether durable can take ``value`` safely (hazards A2, A3)."""
    kind = type(value)  # fast paths for the exact common types
    if kind is str:
        return len(value) <= MAX_STRING_LENGTH
    if kind is int:
        return bool(_INT64_MIN <= value <= _INT64_MAX)
    if kind is bool:
        return True
    if isinstance(value, float):
        # json writes exponent notation exactly outside [1e-4, 1e16): A2.
        return value == 0.0 or (math.isfinite(value) and 1e-4 <= abs(value) < 1e16)
    if isinstance(value, str):
        return len(value) <= MAX_STRING_LENGTH
    if isinstance(value, int):
        return isinstance(value, bool) or _INT64_MIN <= value <= _INT64_MAX
    return False


def _check_attributes(fact: Mapping[str, Any], where: str) -> None:
    """Raise EngineError if ``fact``'s keys or values are unsafe for durable.

    Values: safe scalars or lists/tuples of safe scalars.
    """
    if len(fact) > MAX_FACT_KEYS:
        raise EngineError(f"{where} has more than {MAX_FACT_KEYS} keys")
    for key, value in fact.items():
        if type(key) is not str or not key or key[0] == "$" or key in _RESERVED_FACT_KEYS:
            raise EngineError(
                f"{where} has a key that is empty, not a string or reserved"
                + (f" ({key!r})" if isinstance(key, str) else "")
            )
        kind = type(value)  # the common exact types inline: this runs for every attribute of every fact
        if kind is str:
            if len(value) <= MAX_STRING_LENGTH:
                continue
        elif kind is bool:
            continue
        elif kind is int:
            if _INT64_MIN <= value <= _INT64_MAX:
                continue
        elif _value_ok(value):
            continue
        if isinstance(value, (list, tuple)) and all(_value_ok(item) for item in value):
            continue
        raise EngineError(
            f"{where}: attribute {key!r} has a value durable cannot hold "
            "(allowed: str, bool, int64, float in [1e-4, 1e16) or 0, and lists of "
            "those; leave absent values out instead of using None)"
        )


def _check_type(fact_type: Any, where: str) -> str:
    """Return ``fact_type`` if it is a usable, non-reserved type name."""
    if not isinstance(fact_type, str) or not fact_type:
        raise EngineError(f"{where} has no string 'type'")
    if fact_type.startswith("__"):
        raise EngineError(f"{where} uses reserved type {fact_type!r}")
    return fact_type


def _value_key(value: Any) -> tuple[str, Any]:
    """A checked scalar with its JSON kind, so ``1``, ``1.0``, ``True`` and ``-0.0`` / ``0.0`` stay apart."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("i", int(value))
    if isinstance(value, float):
        return ("f", repr(float(value)))
    return ("s", str(value))


def _canonical(fact_type: str, attributes: Mapping[str, Any]) -> tuple[Any, ...]:
    """A hashable key of a fact's content (type and attributes, no fid/sid).

    Two facts get the same key exactly when their canonical JSON (sorted keys)
    is the same: attributes in any order, each value with its JSON kind.
    Values are checked scalars or lists of them (:func:`_check_attributes`).
    """
    items: list[tuple[str, Any]] = []
    for key in sorted(attributes):
        value = attributes[key]
        if isinstance(value, (list, tuple)):
            items.append((key, ("l", tuple(_value_key(item) for item in value))))
        else:
            items.append((key, _value_key(value)))
    return (fact_type, *items)


def _safe_engine_error(exc: Exception) -> EngineError:
    """An EngineError for an unexpected durable failure, without fact data.

    durable's C layer reports ``"Could not ... error code: N"`` (no data); that
    text is kept.  Any other message is dropped, only the class name is kept.
    """
    text = str(exc)
    if _SAFE_DURABLE_MESSAGE.match(text):
        return EngineError(f"durable failed: {text}")
    return EngineError(f"durable failed with {type(exc).__name__}")


# ---------------------------------------------------------------- rule checks


def _check_pattern_node(node: Any, rule_id: str, in_logic_list: bool = False) -> None:
    """Recursively refuse multi-key objects (A1), unknown or negating operators,
    references to the session state and unsafe constants (A2).

    An empty object is allowed only as an element of an ``$and``/``$or`` list
    (it means "true", as in an empty ``any`` alternative).
    """
    if isinstance(node, Mapping):
        keys = list(node)
        if not keys and in_logic_list:
            return
        if len(keys) != 1 and set(keys) != {"$l", "$r"}:
            raise RulesetError(
                f"rule {rule_id!r}: every pattern object must have exactly one key "
                "(durable ignores all but the first; combine conditions with '$and')"
            )
        for key in keys:
            if not isinstance(key, str):
                raise RulesetError(f"rule {rule_id!r}: pattern keys must be strings")
            if "$not" in key or (key.startswith("$") and key not in _ALLOWED_OPERATORS):
                raise RulesetError(
                    f"rule {rule_id!r}: operator {key!r} is not supported (negation is evaluated outside the engine)"
                )
            if "$" in key[1:] or key in _RESERVED_FACT_KEYS:
                raise RulesetError(f"rule {rule_id!r}: pattern key {key!r} is not allowed")
            value = node[key]
            if key in ("$and", "$or"):
                if not isinstance(value, (list, tuple)) or not value:
                    raise RulesetError(f"rule {rule_id!r}: {key} needs a non-empty list")
                for item in value:
                    if not isinstance(item, Mapping):
                        raise RulesetError(f"rule {rule_id!r}: {key} items must be objects")
                    _check_pattern_node(item, rule_id, in_logic_list=True)
            else:
                _check_pattern_node(value, rule_id)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _check_pattern_node(item, rule_id)
    elif node is None or not _value_ok(node):
        raise RulesetError(f"rule {rule_id!r}: a pattern constant durable cannot parse or compare")


def _pattern_type(pattern: Any, rule_id: str, binding: str) -> str:
    """Return the type a pattern constrains by equality, or refuse it (hazard 9)."""
    candidates: list[Any] = []
    if isinstance(pattern, Mapping):
        if "type" in pattern:
            candidates.append(pattern["type"])
        conjuncts = pattern.get("$and")
        if isinstance(conjuncts, (list, tuple)):
            candidates.extend(
                item["type"] for item in conjuncts if isinstance(item, Mapping) and len(item) == 1 and "type" in item
            )
    types = [c for c in candidates if isinstance(c, str) and c]
    if not types:
        raise RulesetError(
            f"rule {rule_id!r}, binding {binding!r}: the pattern must constrain 'type' "
            "by equality, directly or in a top-level '$and' (hazard 9)"
        )
    if any(t.startswith("__") for t in types):
        raise RulesetError(f"rule {rule_id!r}: fact types starting with '__' are reserved")
    if len(set(types)) != 1:
        raise RulesetError(f"rule {rule_id!r}, binding {binding!r}: conflicting type constraints")
    return types[0]


_COMPARISONS = frozenset({"$eq", "$lt", "$lte", "$gt", "$gte", "$neq"})
_ARITHMETIC = frozenset({"$add", "$sub", "$mul", "$div"})
_ALPHA_ONLY = frozenset({"$ex", "$nex", "$mt", "$imt", "$iall", "$iany"})
MAX_VARIANTS = 128
"""Most conjunctive variants one rule may expand to (see :func:`_dnf`)."""


def _operand_references(operand: Any, rule_id: str) -> set[tuple[str, str]]:
    """(binding, field) pairs a condition's operand refers to (empty: a constant)."""
    if not isinstance(operand, Mapping):
        return set()
    if set(operand) == {"$l", "$r"}:
        return _operand_references(operand["$l"], rule_id) | _operand_references(operand["$r"], rule_id)
    ((key, value),) = operand.items()
    if key in _ARITHMETIC:
        if not isinstance(value, Mapping) or set(value) != {"$l", "$r"}:
            raise RulesetError(f"rule {rule_id!r}: {key} needs {{'$l': ..., '$r': ...}}")
        return _operand_references(value, rule_id)
    if key.startswith("$") or not isinstance(value, str):
        raise RulesetError(f"rule {rule_id!r}: a join operand must be {{binding: field}} or arithmetic")
    return {(key, value)}


def _leaf_join(leaf: Mapping[str, Any], rule_id: str) -> tuple[str, set[tuple[str, str]]] | None:
    """For a join condition: the own field and the (binding, field) pairs it
    refers to; ``None`` for a condition durable evaluates on one fact alone."""
    ((key, value),) = leaf.items()
    if key in _ALPHA_ONLY:
        return None
    if key in _COMPARISONS:
        if not isinstance(value, Mapping) or len(value) != 1:
            raise RulesetError(f"rule {rule_id!r}: {key} needs {{field: operand}}")
        ((field, operand),) = value.items()
    elif key.startswith("$"):
        raise RulesetError(f"rule {rule_id!r}: operator {key} cannot be a condition")
    else:
        field, operand = key, value
    refs = _operand_references(operand, rule_id)
    return (field, refs) if refs else None


def _has_join(node: Mapping[str, Any], rule_id: str) -> bool:
    """Whether a condition or group compares with another binding anywhere."""
    if not node:
        return False
    ((key, value),) = node.items()
    if key in ("$and", "$or"):
        return any(_has_join(child, rule_id) for child in value)
    return _leaf_join(node, rule_id) is not None


def _simplify(node: Mapping[str, Any]) -> dict[str, Any] | None:
    """A join-free group without empty objects (``{}`` is "true", which durable
    cannot parse); ``None`` if the group is always true."""
    if not node:
        return None
    ((key, value),) = node.items()
    if key not in ("$and", "$or"):
        return dict(node)
    children = [_simplify(child) for child in value]
    if key == "$or" and any(child is None for child in children):
        return None
    kept = [child for child in children if child is not None]
    return {key: kept} if kept else None


def _dnf(node: Mapping[str, Any], rule_id: str) -> list[list[dict[str, Any]]]:
    """A pattern as a disjunction of conjunctions: single conditions and
    join-free ``$or`` groups.

    durable evaluates nested ``$and``/``$or`` in joins wrongly (hazard A8: join
    conditions after a nested list are ignored; a ``$or`` whose last join is
    true reads out of bounds).  So ``$and`` lists are flattened and every ``$or``
    that contains a join becomes separate rule variants; join-free ``$or``
    groups are kept (durable evaluates them per fact, correctly) and placed
    after all joins (see :func:`_conjunction`).
    """
    if not node:
        return [[]]  # the empty object: "true"
    ((key, value),) = node.items()
    if key == "$or" and not _has_join(node, rule_id):
        group = _simplify(node)
        return [[group] if group is not None else []]
    if key == "$and":
        result: list[list[dict[str, Any]]] = [[]]
        for child in value:
            result = [left + right for left in result for right in _dnf(child, rule_id)]
            if len(result) > MAX_VARIANTS:
                break
    elif key == "$or":
        result = [alternative for child in value for alternative in _dnf(child, rule_id)]
    else:
        result = [[dict(node)]]
    if len(result) > MAX_VARIANTS:
        raise RulesetError(f"rule {rule_id!r} expands to more than {MAX_VARIANTS} variants ('$or')")
    return result


@attrs.frozen
class _CompiledRule:
    """One user rule as durable gets it: its variants (name -> definition),
    sorted binding names, fact types, and join fields by fact type."""

    variants: dict[str, dict[str, Any]]
    binding_names: tuple[str, ...]
    types: frozenset[str]
    join_fields: dict[str, frozenset[str]]
    join_types: frozenset[str] = frozenset()
    """Types whose facts a join reads or is evaluated on: those with join fields, and the
    first binding's when the rule has a join (hazard A7's sentinel compares its ``sid``)."""


def _conjunction(
    rule_id: str,
    bindings: Sequence[tuple[str, str]],
    alternatives: Sequence[Sequence[dict[str, Any]]],
) -> tuple[list[dict[str, Any]], dict[str, set[str]]] | None:
    """The durable ``all`` list of one variant and its join fields by binding
    (``None`` if the variant can never match).

    Guards, for every join condition (a comparison with another binding's field):
    - hazard A9: both fields must exist, or durable aborts the whole call with
      error 311 (and with 312 for a null on the left): ``$ex`` conditions are
      added to both bindings' patterns.  As every binding belongs to this rule,
      this only drops facts that could never satisfy the join.
    - hazard A7: an always-true join (``sid`` equals the first binding's) is
      appended after the last join condition.
    """
    names = [name for name, _type in bindings]
    joins: list[list[dict[str, Any]]] = [[] for _ in bindings]
    groups: list[list[dict[str, Any]]] = [[] for _ in bindings]
    plain: list[list[dict[str, Any]]] = [[{"type": fact_type}] for _name, fact_type in bindings]
    needs: dict[str, set[str]] = {name: set() for name in names}
    for position, conditions in enumerate(alternatives):
        earlier = names[:position]
        for leaf in conditions:
            if "$or" in leaf or "$and" in leaf:
                groups[position].append(leaf)  # join-free: after the joins (A8)
                continue
            if set(leaf) == {"type"} and isinstance(leaf["type"], str):
                if leaf["type"] != bindings[position][1]:
                    return None  # an alternative demanding another type never matches
                continue  # already first
            join = _leaf_join(leaf, rule_id)
            if join is None:
                plain[position].append(leaf)
                continue
            field, refs = join
            unknown = sorted({binding for binding, _field in refs} - set(earlier))
            if unknown:
                raise RulesetError(f"rule {rule_id!r}: joins may only refer to earlier bindings, not {unknown}")
            needs[names[position]].add(field)
            for binding, ref_field in refs:
                needs[binding].add(ref_field)
            joins[position].append(leaf)
    conditions_all: list[dict[str, Any]] = []
    for position, name in enumerate(names):
        guards = [{"$ex": {field: 1}} for field in sorted(needs[name])]
        sentinel = [{"sid": {names[0]: "sid"}}] if joins[position] else []
        parts = plain[position] + guards + joins[position] + sentinel + groups[position]
        conditions_all.append({name: parts[0] if len(parts) == 1 else {"$and": parts}})
    return conditions_all, needs


def _compile_rule(rule_id: Any, rule: Any) -> _CompiledRule:
    """Validate one rule and return the durable rule variants it becomes."""
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id) or rule_id.startswith("__"):
        raise RulesetError(
            f"invalid rule id {rule_id!r}: use [A-Za-z0-9_.:-], at most 128 characters, "
            "not starting with '__' (reserved for internal rules)"
        )
    if not isinstance(rule, Mapping):
        raise RulesetError(f"rule {rule_id!r} is not a mapping")
    unknown = sorted(str(k) for k in rule if k not in ("all", "pri"))
    if unknown:
        raise RulesetError(
            f"rule {rule_id!r}: unsupported keys {unknown} (only 'all' and 'pri'; "
            "'any', 'count', 'cap', 'dist' and 'run' are not supported)"
        )
    pri = rule.get("pri", 0)
    if isinstance(pri, bool) or not isinstance(pri, int) or not 0 <= pri < _PRI_LIMIT:
        raise RulesetError(f"rule {rule_id!r}: 'pri' must be an int in [0, 2**31) (hazard 13)")
    conditions = rule.get("all")
    if not isinstance(conditions, (list, tuple)) or not conditions:
        raise RulesetError(f"rule {rule_id!r}: 'all' must be a non-empty list")
    bindings: list[tuple[str, str]] = []
    per_binding: list[list[list[dict[str, Any]]]] = []
    for condition in conditions:
        if not isinstance(condition, Mapping) or len(condition) != 1:
            raise RulesetError(f"rule {rule_id!r}: each 'all' entry must be {{binding: pattern}}")
        ((binding, pattern),) = condition.items()
        if (
            not isinstance(binding, str)
            or not _IDENT.match(binding)
            or binding in _RESERVED_FACT_KEYS
            or any(binding == name for name, _type in bindings)
        ):
            raise RulesetError(
                f"rule {rule_id!r}: binding {binding!r} must be a unique identifier "
                "(forms such as 'm$not' / 'm$any' are not supported)"
            )
        _check_pattern_node(pattern, rule_id)
        fact_type = _pattern_type(pattern, rule_id, binding)
        bindings.append((binding, fact_type))
        per_binding.append(_dnf(pattern, rule_id))

    combinations = list(itertools.islice(itertools.product(*per_binding), MAX_VARIANTS + 1))
    if len(combinations) > MAX_VARIANTS:
        raise RulesetError(f"rule {rule_id!r} expands to more than {MAX_VARIANTS} variants ('$or')")
    variants: dict[str, dict[str, Any]] = {}
    join_fields: dict[str, set[str]] = {}
    join_types: set[str] = set()
    types = {fact_type for _name, fact_type in bindings}
    type_of = dict(bindings)
    compiled = [c for c in (_conjunction(rule_id, bindings, combo) for combo in combinations) if c is not None]
    if not compiled:
        raise RulesetError(f"rule {rule_id!r} can never match (contradicting type constraints)")
    for number, (conditions_all, needs) in enumerate(compiled, start=1):
        name = rule_id if len(compiled) == 1 else f"{rule_id}~{number}"
        variants[name] = {"all": conditions_all, "pri": pri, "run": name}
        for binding, fields in needs.items():
            join_fields.setdefault(type_of[binding], set()).update(fields)
            if fields:
                join_types.update((type_of[binding], bindings[0][1]))
    return _CompiledRule(
        variants=variants,
        binding_names=tuple(sorted(type_of)),
        types=frozenset(types),
        join_fields={t: frozenset(f) for t, f in join_fields.items() if f},
        join_types=frozenset(join_types),
    )


def _default_sid_factory() -> Callable[[], str]:
    """Sids ``s1``, ``s2``, ... (one live session at a time makes reuse harmless)."""
    counter = itertools.count(1)
    return lambda: f"s{next(counter)}"


_engine_numbers = itertools.count(1)


class Engine:
    """A compiled rule set on its own durable Host; :meth:`run` evaluates one case.

    ``rules`` maps rule ids to durable JSON definitions ``{"all": [...], "pri": n}``
    (no ``run``: each rule's action is bound by its id).  They are checked and
    rewritten before durable sees them (hazards 9, A1-A9): a rule with a join
    inside ``$or`` becomes several durable rules, yet it reports under its own
    id and fires at most once per tuple of matched facts (A10).  ``derive`` maps
    the ids of deriving rules to their :data:`DeriveFn`; other rules only record
    firings.
    ``name`` prefixes the (always unique) durable ruleset name.  ``sid_factory``
    supplies session ids (tests use it for hazard 4).  ``max_facts`` bounds the
    facts of one session (input plus derived): a rule set that keeps deriving new
    content fails with EngineError instead of running away (durable also reports
    spurious duplicates after about 46,000 facts in one session).  ``max_firings``
    and ``max_seconds`` are each run's budget: past either, the run ends with
    :class:`EngineBudgetError` (time is checked at every firing; durable's own
    matching between firings cannot be interrupted, which is why rule packs are
    held to the limits in :mod:`secondopinion.limits`).
    """

    fact_types: frozenset[str]
    """Fact types named in the patterns; facts of other types are not sent to durable."""

    name: str
    """The unique durable ruleset name of this Engine."""

    def __init__(
        self,
        rules: Mapping[str, Mapping[str, Any]],
        derive: Mapping[str, DeriveFn],
        *,
        name: str | None = None,
        sid_factory: Callable[[], str] | None = None,
        max_facts: int = 10_000,
        max_firings: int = 20_000,
        max_seconds: float = 5.0,
    ) -> None:
        prefix = "secondopinion" if name is None else name
        if not isinstance(prefix, str) or not _ENGINE_NAME.match(prefix):
            raise RulesetError("engine name must match [A-Za-z0-9_.-]{1,64} (hazard A6)")
        if not isinstance(rules, Mapping) or not rules:
            raise RulesetError("rules must be a non-empty mapping of rule id to rule")
        unknown = sorted(str(k) for k in derive if k not in rules)
        if unknown:
            raise RulesetError(f"derive functions for unknown rules: {unknown}")
        if isinstance(max_facts, bool) or not isinstance(max_facts, int) or max_facts < 1:
            raise EngineError("max_facts must be a positive int")
        if isinstance(max_firings, bool) or not isinstance(max_firings, int) or max_firings < 1:
            raise EngineError("max_firings must be a positive int")
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, int | float) or not max_seconds > 0:
            raise EngineError("max_seconds must be a positive number")

        definitions: dict[str, dict[str, Any]] = {}
        actions: dict[str, Callable[[Any], None]] = {}
        types: set[str] = set()
        join_fields: dict[str, set[str]] = {}
        join_types: set[str] = set()
        for rule_id, rule in rules.items():
            compiled = _compile_rule(rule_id, rule)
            types |= compiled.types
            join_types |= compiled.join_types
            for fact_type, fields in compiled.join_fields.items():
                join_fields.setdefault(fact_type, set()).update(fields)
            for variant, definition in compiled.variants.items():
                definitions[variant] = definition
                actions[variant] = self._make_action(rule_id, compiled.binding_names, derive.get(rule_id))

        # Internal rules (hazards 2 and 6).  Their actions are one-parameter too.
        definitions[_OPEN_RULE] = {
            "all": [{"s": {"type": _SESSION_TYPE}}],
            "pri": 0,
            "run": _OPEN_RULE,
        }
        actions[_OPEN_RULE] = self._open_action
        # One sink for all types: a join-free "$or" is evaluated per fact (A8).
        sink_types = [{"type": fact_type} for fact_type in sorted(types)]
        definitions[_SINK_RULE] = {
            "all": [
                {"f": sink_types[0] if len(sink_types) == 1 else {"$or": sink_types}},
                {"n": {"type": _NEVER_TYPE}},
            ],
            "pri": 0,
            "run": _SINK_RULE,
        }
        actions[_SINK_RULE] = self._sink_action

        self.fact_types = frozenset(types)
        self._join_fields = {t: tuple(sorted(f)) for t, f in join_fields.items()}
        self._join_types = frozenset(join_types)
        self.name = f"{prefix}-{next(_engine_numbers)}"
        self._max_facts = max_facts
        self._max_firings = max_firings
        self._max_seconds = float(max_seconds)
        self._sid_factory = sid_factory or _default_sid_factory()
        self._sids_checked = sid_factory is not None  # the default factory's sids are valid by construction
        self._lock = threading.Lock()
        self._ctx: _Session | None = None
        self._unusable = False
        self._host = _Host(actions)
        try:
            # Hazard 14: register_rulesets pops "run" from what it is given.
            self._host.register_rulesets({self.name: copy.deepcopy(definitions)})
        except Exception as exc:
            raise RulesetError(f"durable refused the rule set ({_safe_engine_error(exc)})") from None
        # durable never frees a ruleset (about 1.2 MB for the shipped rules): free it with the Engine.
        # Nothing can run on an unreachable Engine, so no session of it is live then.
        handle = self._host.get_ruleset(self.name)._handle
        release = weakref.finalize(self, _durable.durable_rules_engine.delete_ruleset, handle)
        release.atexit = False
        # Guard 15: the action loop that writes the session state only when it changed.
        ruleset = self._host.get_ruleset(self.name)
        ruleset._flush_actions = functools.partial(_flush_actions, ruleset)
        # JSON in and out of durable with orjson (the same values for checked facts, four times faster).
        ruleset.assert_fact = functools.partial(_assert_fact, ruleset)
        ruleset.assert_facts = functools.partial(_assert_facts, ruleset)
        ruleset.do_actions = functools.partial(_do_actions, ruleset)

    # ------------------------------------------------------------ actions

    def _make_action(
        self,
        rule_id: str,
        binding_names: tuple[str, ...],
        derive: DeriveFn | None,
    ) -> Callable[[Any], None]:
        """Build the durable action of one rule variant.

        Hazard 7: it must take exactly one parameter (no defaults either: durable
        counts ``co_argcount``), and it must never let an exception reach durable.
        """
        engine = self

        def action(c: Any) -> None:
            engine._fire(rule_id, binding_names, derive, c)

        return action

    def _open_action(self, c: Any) -> None:
        """Action of ``__open``: marks the session as safely deletable (hazard 2)."""
        ctx = self._ctx
        if ctx is not None:
            ctx.opened = True

    def _sink_action(self, c: Any) -> None:
        """Action of the sink rules; they join with a never-asserted fact, so it never runs."""

    def _fire(
        self,
        rule_id: str,
        binding_names: tuple[str, ...],
        derive: DeriveFn | None,
        c: Any,
    ) -> None:
        """Record a firing and, for deriving rules, derive and assert a fact.

        A rule fires at most once per tuple of matched facts (hazard A10: durable
        activates a rule once per satisfied ``$or`` alternative, and a rule with
        several variants may match one tuple in more than one of them).
        """
        ctx = self._ctx
        if ctx is None or ctx.action_error is not None or ctx.failure is not None:
            if ctx is not None and ctx.stopped:
                _stop_flush(c)
            return
        try:
            message = c._m
            if len(binding_names) == 1:  # most rules: no comprehension to build
                matched = {binding_names[0]: message[binding_names[0]]["fid"]}
            else:
                matched = {name: message[name]["fid"] for name in binding_names}
            key = (rule_id, *matched.values())
            if key in ctx.seen:
                return
            ctx.seen.add(key)
            if len(ctx.firings) >= self._max_firings or time.monotonic() > ctx.deadline:
                what = (
                    f"more than {self._max_firings} rule firings"
                    if len(ctx.firings) >= self._max_firings
                    else f"more than {self._max_seconds:g} s"
                )
                ctx.failure = EngineBudgetError(
                    f"the rules went over the engine's budget: {what} (last rule {rule_id!r})"
                )
                ctx.stopped = True
                _stop_flush(c)
                return
            firing = Firing(rule_id, matched)
            ctx.firings.append(firing)
            if derive is None:
                return
            by_fid = ctx.by_fid
            produced = derive({name: dict(by_fid[fid]) for name, fid in matched.items()})
            if produced is None:
                return
            if type(produced) is not dict and not isinstance(produced, Mapping):
                raise EngineError(f"rule {rule_id!r}: derive returned a non-mapping")
            attributes = dict(produced)
            where = f"fact derived by {rule_id!r}"
            fact_type = _check_type(attributes.pop("type", None), where)
            if fact_type in self._join_types:
                ctx.failure = EngineError(
                    f"rule {rule_id!r} derived a {fact_type!r} fact, and a join reads {fact_type!r} facts: "
                    "durable does not reliably match joins on facts derived during a session (hazard A11)"
                )
                ctx.stopped = True  # its result cannot be trusted: drop the queued actions
                _stop_flush(c)
                return
            if "fid" in attributes:
                raise EngineError(f"{where} carries reserved key 'fid'")
            _check_attributes(attributes, where)
            self._check_join_values(fact_type, attributes, where)
            content = _canonical(fact_type, attributes)
        except BaseException as exc:
            ctx.action_error = (rule_id, exc)
            return

        record = ctx.by_content.get(content)
        if record is not None:  # hazard 5: same content, record only
            record.derivations.append(firing)
            return
        if ctx.fact_count >= self._max_facts:
            ctx.failure = EngineError(f"session exceeded {self._max_facts} facts (last rule {rule_id!r})")
            return
        number = ctx.per_type.get(fact_type, 0) + 1
        ctx.per_type[fact_type] = number
        fid = f"{fact_type}#{number}"
        record = _DerivedRecord(fid, fact_type, attributes, [firing])
        ctx.by_content[content] = record
        ctx.derived.append(record)
        ctx.fact_count += 1
        fact: Fact = {"type": fact_type, "fid": fid, **attributes}
        by_fid[fid] = fact
        if fact_type in self.fact_types:
            try:
                c.assert_fact({**fact, "sid": ctx.sid})
            except (
                _durable.MessageNotHandledException,
                _durable.MessageObservedException,
            ):
                ctx.failure = EngineError(
                    f"durable refused fact {fid!r} derived by rule {rule_id!r} (not handled or already observed)"
                )
            except Exception as exc:
                ctx.failure = _safe_engine_error(exc)
            if ctx.stopped:  # a nested flush stopped: stop this one too
                _stop_flush(c)

    # ------------------------------------------------------------ sessions

    def _prepare(self, facts: Sequence[Fact]) -> tuple[dict[str, Fact], list[Fact]]:
        """Validate and copy the input facts (outside the lock).

        Returns fid -> copy (all facts, input order) and the copies to assert
        (those whose type a pattern names, hazard 6).
        """
        by_fid: dict[str, Fact] = {}
        to_assert: list[Fact] = []
        fact_types = self.fact_types
        for position, fact in enumerate(facts):
            if not isinstance(fact, Mapping):
                raise EngineError(f"input fact #{position} is not a mapping")
            fid = fact.get("fid")
            if not isinstance(fid, str) or not fid:
                raise EngineError(f"input fact #{position} has no string 'fid'")
            if fid.startswith("__") or "#" in fid:
                raise EngineError(f"input fact {fid!r}: fids starting with '__' or containing '#' are reserved")
            if fid in by_fid:
                raise EngineError(f"duplicate input fact id {fid!r}")
            where = f"input fact {fid!r}"
            fact_type = _check_type(fact.get("type"), where)
            _check_attributes(fact, where)
            self._check_join_values(fact_type, fact, where)
            copied = dict(fact)
            by_fid[fid] = copied
            if fact_type in fact_types:
                to_assert.append(copied)
        return by_fid, to_assert

    def _check_join_values(self, fact_type: str, fact: Mapping[str, Any], where: str) -> None:
        """Refuse lists in fields used by joins: durable aborts comparing them (A9)."""
        for field in self._join_fields.get(fact_type, ()):
            if isinstance(fact.get(field), (list, tuple)):
                raise EngineError(f"{where}: attribute {field!r} is used in a join and must not be a list")

    def _new_sid(self) -> str:
        """Next session id from the factory, checked (durable does not escape it)."""
        sid = self._sid_factory()
        if self._sids_checked and (not isinstance(sid, str) or not _SID.match(sid)):
            raise EngineError("sid_factory returned an invalid sid (use [A-Za-z0-9_.:-]{1,64})")
        return sid

    def run(self, facts: Sequence[Fact]) -> SessionResult:
        """Evaluate one complete fact set in a fresh session and delete it.

        Raises :class:`ActionError` if an action failed, :class:`EngineError`
        for invalid facts or any engine failure.  Thread-safe (hazard 10).
        """
        by_fid, to_assert = self._prepare(facts)
        input_facts = list(by_fid.values())
        ctx = _Session(by_fid=by_fid, fact_count=len(input_facts))
        failure: EngineError | None = None
        with self._lock:
            if self._unusable:
                raise EngineError("engine unusable: an earlier session could not be deleted safely")
            sid = ctx.sid = self._new_sid()
            ctx.deadline = time.monotonic() + self._max_seconds  # the budget starts once the lock is held
            self._ctx = ctx
            host, name = self._host, self.name
            try:
                try:
                    # Hazards 2 / A5: open the session on its own, so an action ran.
                    state = host.assert_fact(name, {"type": _SESSION_TYPE, "fid": _SESSION_TYPE, "sid": sid})
                    if ctx.opened and to_assert:
                        state = host.assert_facts(name, [{**fact, "sid": sid} for fact in to_assert])
                except (
                    _durable.MessageNotHandledException,
                    _durable.MessageObservedException,
                ):
                    # Hazard 6: durable's exception carries the facts' JSON.
                    failure = EngineError("durable refused an input fact (not handled or already observed)")
                except Exception as exc:
                    failure = _safe_engine_error(exc)
                else:
                    if not ctx.opened:
                        failure = EngineError("internal rule __open did not run")
                    elif state is not None and not isinstance(state, dict):
                        # Hazard 9: durable dropped an action (10 s lease) and
                        # returned without finishing the session's actions.
                        failure = EngineError("an action exceeded durable's 10 s lease")
                    elif isinstance(state, dict) and "exception" in state:
                        failure = EngineError("durable recorded an action exception")
            finally:
                self._ctx = None
                if ctx.opened:  # hazard 3: always delete; hazard 2: only when safe
                    try:
                        host.delete_state(name, sid)
                    except BaseException:
                        self._unusable = True
                        raise
                else:
                    self._unusable = True

        if ctx.action_error is not None:
            rule_id, cause = ctx.action_error
            if not isinstance(cause, Exception):
                raise cause  # KeyboardInterrupt and the like propagate as they are
            raise ActionError(rule_id) from cause
        failure = ctx.failure if ctx.stopped else failure or ctx.failure
        if failure is not None:
            raise failure

        derived = tuple(DerivedFact(r.fid, r.type, r.attributes, tuple(r.derivations)) for r in ctx.derived)
        all_facts = input_facts + [by_fid[r.fid] for r in ctx.derived]
        return SessionResult(tuple(ctx.firings), derived, tuple(all_facts))
