"""MkDocs hooks for the secondopinion site (loaded by ``hooks:`` in mkdocs.yml).

The code's docstrings use a few Sphinx-style roles (``:class:`Advisor```,
``:func:`~secondopinion.case.load_case```) and reStructuredText links
(```text <https://...>`_``). Markdown would show them literally, so a small
Markdown preprocessor turns them into code spans and links, for the pages and
for the docstrings that mkdocstrings renders alike.
"""

from __future__ import annotations

import re
from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|py:\w+):`(~?)([^`<>]+)`")
_REST_LINK = re.compile(r"`([^`<>]+?) <(https?://[^>`\s]+)>`__?")


def _role(match: re.Match[str]) -> str:
    name = match.group(2).strip()
    return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"


class _Roles(Preprocessor):
    """Sphinx roles to code spans, reStructuredText links to Markdown links."""

    def run(self, lines: list[str]) -> list[str]:
        return [_REST_LINK.sub(r"[\1](\2)", _ROLE.sub(_role, line)) for line in lines]


class RolesExtension(Extension):
    """Registers :class:`_Roles` before every other preprocessor."""

    def extendMarkdown(self, md: Markdown) -> None:  # the name Markdown calls
        md.preprocessors.register(_Roles(md), "secondopinion_roles", 40)


@event_priority(100)  # before mkdocstrings reads the list of extensions
def on_config(config: Any) -> Any:
    config.markdown_extensions.append(RolesExtension())
    return config
