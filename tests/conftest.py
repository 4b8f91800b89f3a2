"""Shared pytest configuration: Hypothesis profiles.

``HYPOTHESIS_PROFILE`` selects one (default ``ci``):

* ``ci``: the default for every run, CI included: 100 examples per property,
  derandomized so a run is reproducible, no per-example deadline (engine runs
  on a shared machine vary in speed).
* ``nightly``: 2,000 examples per property, random seeds; for a scheduled
  long run (``HYPOTHESIS_PROFILE=nightly python -m pytest tests/test_properties.py``).
* ``dev``: 25 examples, for a quick local loop.

Tests that pass their own ``@settings`` keep them; a profile only sets the defaults.

The rule file cache (secondopinion/rulecache.py) goes to a temporary folder for the
run, unless ``SECONDOPINION_CACHE_DIR`` is set: tests never write to the user's cache.

Slow tests: besides those marked ``@pytest.mark.slow`` in their files, the tests in
``SLOW`` below (each over half a minute on the 2-core CI machine: whole-rule-base
verification, threads over thousands of cases, process pools) get the mark here, so
``python -m pytest -n auto`` (the README's command) stays within a few minutes and
``python -m pytest -m slow`` (a step of its own in .ci/run) runs them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
from hypothesis import settings

if "SECONDOPINION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="secondopinion-test-cache-")
    os.environ["SECONDOPINION_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)

SLOW = frozenset(
    {
        "tests/test_batch.py::test_parallel_output_is_identical_to_the_sequential_output",
        "tests/test_cli.py::test_verify_passes_on_the_shipped_rules",
        "tests/test_cli.py::test_verify_finds_a_dead_rule_with_its_reason_and_exits_1",
        "tests/test_docs_generated.py::test_the_python_in_a_guide_runs[howto/verify-rule-pack.md]",
        "tests/test_explain.py::test_why_not_agrees_with_the_engine_on_every_rule_and_example_case",
        "tests/test_hardening.py::test_eight_threads_give_exactly_the_sequential_results",
        "tests/test_hardening.py::test_threads_on_two_advisors_at_once_do_not_mix_sessions",
        "tests/test_json_schemas.py::test_generated_cases_and_their_advice_validate",
        "tests/test_properties.py::test_same_case_same_advice_json_across_processes",
        "tests/test_testing.py::test_the_worked_example_pack_passes_its_own_tests",
        "tests/test_verify.py::test_cli_verify_exit_codes_and_json",
        "tests/test_verify.py::test_every_shipped_witness_reproduces_through_the_engine",
        "tests/test_verify.py::test_report_json_lists_every_finding",
        "tests/test_verify.py::test_same_rules_same_report",
        "tests/test_verify.py::test_shipped_rule_base_has_no_error",
    }
)
"""Node ids of tests marked slow here (see the module docstring)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests named in SLOW (before ``-m`` deselects by marker)."""
    for item in items:
        if item.nodeid in SLOW:
            item.add_marker(pytest.mark.slow)

settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("nightly", max_examples=2000, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
