"""Griffe extension: the reST habits of audioar's docstrings, read as Markdown for the docs.

The docstrings are Google style with a few reST constructs that Python's ``help()`` shows
fine but Markdown does not know. Before mkdocstrings renders them, this extension turns

* roles (``:class:`~audioar.pipeline.trained.TrainedModel```, ``:func:`split```,
  ``:data:`FAMILIES```)
  into links to the object when the reference documents it, and into inline code otherwise;
* reST line blocks (``| Masked Autoregressive Flow ...`` under ``References:``) into a list;
* a literal-block marker (``text::`` before an indented block) into ``text:``;
* ``Example:`` (the style guide's title) into ``Examples:``, the section griffe parses
  (doctest lines become highlighted code, not Markdown);
* a section title with a note (``Attributes (after fit or load):``) into the note and the
  plain title, so that the section is recognised;

and gives a module or class attribute without a docstring the comment that documents it in
the source: a ``#:`` comment above it, or its trailing comment (``num_flows: int = 5  #
number of affine MADE transforms``), as the configuration dataclasses do for every field.

The source files are not changed; only the text griffe hands to the renderer.
"""

from __future__ import annotations

import io
import re
import tokenize
from functools import cache
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|obj|exc|const):`(?P<target>[^`]+)`")
_SECTION_NOTE = re.compile(r"^(?P<indent>\s*)(?P<title>[A-Z][a-z]+)\s+\((?P<note>[^)]*)\):\s*$")
_EXAMPLE = re.compile(r"^(?P<indent>\s*)Example:\s*$")
_LINE_BLOCK = re.compile(r"^(?P<indent>\s*)\| (?P<text>.*)$")


def _scope_path(obj: griffe.Object, name: str) -> str:
    """The full path ``name`` (``MADE.autoregress``, ``split``) stands for, seen from ``obj``."""
    if name.startswith("audioar.") or name == "audioar":
        return name
    head, _, rest = name.lstrip(".").partition(".")
    scope: Any = obj
    while scope is not None:
        member = scope.members.get(head) if hasattr(scope, "members") else None
        if member is not None:
            base = member.target_path if member.is_alias else member.path
            return f"{base}.{rest}" if rest else base
        scope = scope.parent
    return f"{obj.module.path}.{name.lstrip('.')}"


def _role(obj: griffe.Object, match: re.Match) -> str:
    target = match["target"].strip()
    explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", target)
    if explicit:  # :meth:`title <target>`
        title, target = explicit["title"], explicit["target"].lstrip("~")
    else:
        short = target.startswith("~")
        target = target.lstrip("~")
        title = target.rpartition(".")[2] if short else target.lstrip(".")
    identifier = _scope_path(obj, target)
    return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'


def markdown(obj: griffe.Object, text: str) -> str:
    """``text`` (a docstring) with the reST constructs above rewritten."""
    lines = []
    for line in text.split("\n"):
        if note := _SECTION_NOTE.match(line):
            indent = note["indent"]
            lines += [f"{indent}*{note['note'][0].upper()}{note['note'][1:]}:*", ""]
            line = f"{indent}{note['title']}:"
        elif example := _EXAMPLE.match(line):
            line = f"{example['indent']}Examples:"
        elif block := _LINE_BLOCK.match(line):
            line = f"{block['indent']}- {block['text']}"
        elif line.rstrip().endswith("::") and not line.strip().startswith(">>>"):
            stripped = line.rstrip()[:-2].rstrip()
            line = f"{stripped}:" if stripped else ""
        lines.append(line)
    return _ROLE.sub(lambda m: _role(obj, m), "\n".join(lines))


_NOT_DOCS = re.compile(r"^(noqa|type:|pragma|fmt:|pyright:|mypy:)")


@cache
def _source(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def _trailing_comment(line: str) -> str:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return ""
    comments = [t.string for t in tokens if t.type == tokenize.COMMENT]
    return comments[-1].lstrip("#").strip() if comments else ""


def comment_docstring(attr: griffe.Attribute) -> str:
    """The comment documenting ``attr`` in its source: ``#:`` lines just above it (as Sphinx
    reads them), else its trailing comment, else (a class attribute: a dataclass field) the
    comment lines just above it; "" when there is none."""
    if attr.lineno is None or attr.filepath is None or isinstance(attr.filepath, list):
        return ""
    lines = _source(str(attr.filepath))
    above = []
    row = attr.lineno - 2
    while row >= 0 and lines[row].strip().startswith("#:"):
        above.insert(0, lines[row].strip()[2:].strip())
        row -= 1
    if above:
        return " ".join(above)
    last = lines[(attr.endlineno or attr.lineno) - 1]
    comment = _trailing_comment(last.strip())
    if comment and not _NOT_DOCS.match(comment):
        return comment
    if "class-attribute" in attr.labels:  # a field's comment on the lines above it
        row = attr.lineno - 2
        while row >= 0 and lines[row].strip().startswith("#"):
            above.insert(0, lines[row].strip().lstrip("#").strip())
            row -= 1
    return " ".join(above)


class ReSTRoles(griffe.Extension):
    """Rewrites every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[str] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.path in seen:
                continue
            seen.add(obj.path)
            if (
                obj.docstring is None
                and obj.is_attribute
                and obj.labels
                & {
                    "module-attribute",
                    "class-attribute",
                }
            ):
                if comment := comment_docstring(obj):
                    obj.docstring = griffe.Docstring(comment, parent=obj)
            if obj.docstring is not None:
                obj.docstring.value = markdown(obj, obj.docstring.value)
            stack += [m for m in obj.members.values() if not m.is_alias]

    def on_package_loaded(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """The same event under griffe 1's name (the rewriting is idempotent)."""
        self.on_package(pkg=pkg, **kwargs)
