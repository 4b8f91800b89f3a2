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
"""

from __future__ import annotations

import os
import tempfile

from hypothesis import settings

os.environ.setdefault("SECONDOPINION_CACHE_DIR", tempfile.mkdtemp(prefix="secondopinion-test-cache-"))

settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("nightly", max_examples=2000, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
