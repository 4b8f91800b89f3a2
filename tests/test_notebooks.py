"""The example notebooks are in git without outputs, and read as notebooks.

CI executes them through a Jupyter kernel (``pytest --nbmake examples/*.ipynb`` in
``.ci/run``); this file checks what git holds: no outputs, no execution counts, no
local paths. Strip a notebook with ``jupyter nbconvert --clear-output --inplace`` (or
``nbstripout``) before committing it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
EXPECTED = [
    "01-getting-started.ipynb",
    "02-conflicting-opinions.ipynb",
    "03-extending-the-rules.ipynb",
    "04-population-screening.ipynb",
]


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def test_the_four_example_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_is_stored_without_outputs(path: Path) -> None:
    notebook = _load(path)
    assert notebook["nbformat"] == 4
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in notebook["metadata"]
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code, "a notebook without code"
    for index, cell in enumerate(code):
        assert cell["outputs"] == [], f"code cell {index} has outputs: clear them before committing"
        assert cell["execution_count"] is None, f"code cell {index} has an execution count"
        assert not cell.get("metadata", {}).get("execution"), f"code cell {index} has execution timings"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_opens_with_a_title_and_the_not_medical_advice_statement(path: Path) -> None:
    first = _load(path)["cells"][0]
    text = "".join(first["source"])
    assert first["cell_type"] == "markdown"
    assert text.startswith("# ")
    assert "not medical advice" in re.sub(r"[\s>*]+", " ", text.lower())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_uses_no_local_paths(path: Path) -> None:
    sources = "\n".join("".join(cell["source"]) for cell in _load(path)["cells"])
    assert not re.search(r"/(work|tmp|home|root)/", sources)
