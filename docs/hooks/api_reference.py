"""MkDocs hook: the API reference, generated from the ``audioar`` package at every build.

It walks the package with :mod:`pkgutil` (no hand-kept list: a module added, moved into a
sub-package or removed changes the reference by itself) and writes, as in-memory pages:

* ``reference/index.md``: every public module with the first line of its docstring;
* one page per public module (``reference/audioar/models/maf.md``, a package's page is its
  ``index.md``): ``::: audioar.models.maf`` with ``members`` = the names of the module's
  ``__all__`` that it defines, and a table linking the names it re-exports to the page of
  the module that defines them (an object is rendered once, so every link has one target);
* the ``API reference`` entry of ``nav`` in ``mkdocs.yml``, expanded into these pages;

and checks the rendered pages: a name of an ``__all__`` missing from its page is a warning,
so ``mkdocs build --strict`` fails.

The package is read from its source files (``ast``): its ``__all__`` lists, what each module
defines and where each re-export comes from. A package that exports names lazily (a
module-level ``__getattr__``, as ``audioar`` and ``audioar.models`` do) is imported to resolve
them, which for those loads torch once.
"""

from __future__ import annotations

import ast
import importlib
import logging
import pkgutil
import posixpath
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PACKAGE = "audioar"
NAV_TITLE = "API reference"  # the nav entry of mkdocs.yml this hook expands
OUT = "reference"  # where the pages go, under the site's root

log = logging.getLogger(f"mkdocs.hooks.{Path(__file__).stem}")


@dataclass
class Module:
    """What the reference needs to know about one module, read from its source."""

    name: str  # dotted, e.g. audioar.models.maf
    path: Path  # its source file
    is_package: bool
    summary: str = ""  # first line of the docstring
    exports: list[str] = field(default_factory=list)  # __all__, in its order
    defined: set[str] = field(default_factory=set)  # names bound by def / class / assignment
    imported: dict[str, str] = field(default_factory=dict)  # name -> "module.name" it imports
    documented: set[str] = field(default_factory=set)  # defined names that carry a docstring

    @property
    def page(self) -> str:
        """The page's path: ``reference/audioar/models/maf.md``, a package's ``index.md``."""
        parts = self.name.split(".")
        if self.is_package:
            return "/".join([OUT, *parts, "index.md"])
        return "/".join([OUT, *parts]) + ".md"

    @property
    def parent(self) -> str:
        return self.name.rpartition(".")[0]


def _root() -> Path:
    """The repository root: this file is docs/hooks/api_reference.py."""
    return Path(__file__).resolve().parents[2]


def walk(package: str = PACKAGE) -> list[Module]:
    """Every public module of ``package`` (names without a leading underscore), depth first,
    each package before its modules, in alphabetical order."""
    top = _root() / package.replace(".", "/")
    modules = [_read(package, top / "__init__.py", is_package=True)]

    def visit(folder: Path, prefix: str) -> None:
        for info in sorted(pkgutil.iter_modules([str(folder)]), key=lambda m: m.name):
            if info.name.startswith("_"):
                continue
            name = f"{prefix}.{info.name}"
            if info.ispkg:
                modules.append(_read(name, folder / info.name / "__init__.py", is_package=True))
                visit(folder / info.name, name)
            else:
                modules.append(_read(name, folder / f"{info.name}.py", is_package=False))

    visit(top, package)
    return modules


def _bindings(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module-level statements, including those inside ``if`` / ``try`` blocks."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If):
            out += _bindings(node.body) + _bindings(node.orelse)
        elif isinstance(node, ast.Try):
            out += _bindings(node.body) + _bindings(node.orelse) + _bindings(node.finalbody)
            for handler in node.handlers:
                out += _bindings(handler.body)
    return out


def _read(name: str, path: Path, *, is_package: bool) -> Module:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    doc = ast.get_docstring(tree) or ""
    module = Module(name, path, is_package, summary=_first_line(doc))
    package = name if is_package else name.rpartition(".")[0]
    exports: list[str] | None = None
    body = _bindings(tree.body)
    for i, node in enumerate(body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            module.defined.add(node.name)
            if _has_docstrings(node):
                module.documented.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            following = body[i + 1] if i + 1 < len(body) else None
            docstring = (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            )
            for target in targets:
                if isinstance(target, ast.Name):
                    module.defined.add(target.id)
                    if docstring:
                        module.documented.add(target.id)
                    if target.id == "__all__" and node.value is not None:
                        try:
                            exports = list(ast.literal_eval(node.value))
                        except ValueError:  # built at import time: ask the module itself
                            exports = list(importlib.import_module(name).__all__)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:  # relative import
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, source] if source else base)
            for alias in node.names:
                module.imported[alias.asname or alias.name] = f"{source}.{alias.name}"
    module.defined.discard("__all__")
    module.exports = exports or []
    return module


def _has_docstrings(node: ast.AST) -> bool:
    """Whether a class or function, or anything defined in it, has a docstring (what
    mkdocstrings' ``show_if_no_docstring: false`` keeps)."""
    if ast.get_docstring(node):  # type: ignore[arg-type]
        return True
    return any(
        _has_docstrings(child)
        for child in getattr(node, "body", [])
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    )


def _first_line(doc: str) -> str:
    """The docstring's first sentence or line, without reST roles."""
    line = doc.strip().split("\n\n")[0].replace("\n", " ")
    return _plain(line)


def _plain(text: str) -> str:
    """reST roles and double backticks as Markdown code; table cells kept on one line."""
    text = re.sub(r":[a-z]+:`~?\.?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`").replace("|", "\\|")
    return text


def resolve(modules: dict[str, Module], module: Module, name: str) -> str | None:
    """Where ``module``'s export ``name`` is defined: ``"audioar.models.maf.MAF"``."""
    seen = set()
    current, attribute = module, name
    while (current.name, attribute) not in seen:
        seen.add((current.name, attribute))
        if attribute in current.defined and attribute not in current.imported:
            return f"{current.name}.{attribute}"
        target = current.imported.get(attribute)
        if target is None:  # exported lazily (a module __getattr__): import it to see
            obj = getattr(importlib.import_module(current.name), attribute, None)
            where = getattr(obj, "__module__", None)
            if where is None or where not in modules:
                return None
            return f"{where}.{getattr(obj, '__qualname__', attribute)}"
        source, _, attribute = target.rpartition(".")
        if source not in modules:
            return target  # from outside the package (torch, the standard library)
        current = modules[source]
    return None


@dataclass
class Page:
    module: Module
    members: list[str]  # rendered here
    bare: list[str]  # rendered here too, on their own: they have no docstring
    reexports: list[tuple[str, str, Module | None]]  # (name, where defined, its module)
    extra: list[str]  # defined in a module that does not export them: rendered here in full


def plan(modules: list[Module]) -> list[Page]:
    """What each page renders and what it links to."""
    by_name = {m.name: m for m in modules}
    pages = []
    for module in modules:
        members, bare, reexports, extra = [], [], [], []
        for name in module.exports:
            if name in module.defined and name not in module.imported:
                (members if name in module.documented else bare).append(name)
                continue
            target = resolve(by_name, module, name)
            owner = by_name.get(target.rpartition(".")[0]) if target else None
            if owner is not None and target.rpartition(".")[2] in owner.exports:
                reexports.append((name, target, owner))
            elif target is not None and owner is not None:
                extra.append(target)  # defined in the package but exported only here
            else:
                log.warning("%s.__all__ names %r, which could not be resolved", module.name, name)
        pages.append(Page(module, members, bare, reexports, extra))
    return pages


def _yaml_list(names: list[str]) -> str:
    return "[" + ", ".join(f'"{n}"' for n in names) + "]"


def _relative(src: str, dest: str) -> str:
    """A link from page ``src`` to page ``dest`` (both paths under the docs root)."""
    return posixpath.relpath(dest, posixpath.dirname(src))


def render(page: Page, pages: list[Page]) -> str:
    module = page.module
    lines = [
        f"::: {module.name}",
        "    options:",
        "      show_root_heading: true",
        "      show_root_full_path: true",
        "      heading_level: 1",
        f"      members: {_yaml_list(page.members) if page.members else 'false'}",
        "",
    ]
    # Names without a docstring (constants, mostly): shown with their value all the same.
    for target in [f"{module.name}.{name}" for name in page.bare] + page.extra:
        lines += [
            f"::: {target}",
            "    options:",
            "      heading_level: 2",
            "      show_root_full_path: false",
            "      show_if_no_docstring: true",
            "",
        ]
    if page.reexports:
        title = "Public API" if module.name == PACKAGE else "Re-exported names"
        lines += [
            f"## {title}",
            "",
            f"Importable from `{module.name}`; documented where they are defined.",
            "",
            "| name | defined in | summary |",
            "|---|---|---|",
        ]
        for name, target, owner in page.reexports:
            summary = _summary_of(owner, target.rpartition(".")[2]) if owner else ""
            where = f"[`{owner.name}`]({_relative(module.page, owner.page)})" if owner else ""
            lines.append(f"| [`{name}`][{target}] | {where} | {summary} |")
        lines.append("")
    children = [p.module for p in pages if p.module.parent == module.name]
    if module.is_package and children:
        lines += ["## Modules", "", "| module | summary |", "|---|---|"]
        for child in children:
            link = _relative(module.page, child.page)
            lines.append(f"| [`{child.name}`]({link}) | {child.summary} |")
        lines.append("")
    return "\n".join(lines)


_SUMMARIES: dict[tuple[str, str], str] = {}


def _summary_of(module: Module, name: str) -> str:
    """First docstring line of ``name`` as ``module`` defines it."""
    key = (module.name, name)
    if key not in _SUMMARIES:
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        for node in _bindings(tree.body):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                _SUMMARIES[(module.name, node.name)] = _first_line(ast.get_docstring(node) or "")
    return _SUMMARIES.get(key, "")


def render_index(pages: list[Page]) -> str:
    lines = [
        "# API reference",
        "",
        f"Generated at build time from the `{PACKAGE}` package (`docs/hooks/api_reference.py`):"
        " one page per public module, listing the names of its `__all__`. The public API of"
        f" the top-level package is on the [`{PACKAGE}`]({_relative(f'{OUT}/index.md', pages[0].module.page)})"  # noqa: E501
        " page; the command line has its own [reference](../cli.md).",
        "",
        "| module | summary |",
        "|---|---|",
    ]
    for page in pages:
        module = page.module
        link = _relative(f"{OUT}/index.md", module.page)
        lines.append(f"| [`{module.name}`]({link}) | {module.summary} |")
    return "\n".join(lines) + "\n"


def nav_tree(pages: list[Page]) -> list:
    """The nav entries of the reference: packages become sections (their page first)."""

    def entries(package: str) -> list:
        out: list = []
        for page in pages:
            module = page.module
            if module.parent != package:
                continue
            title = module.name.rpartition(".")[2]
            if module.is_package:
                out.append({module.name: [module.page, *entries(module.name)]})
            else:
                out.append({title: module.page})
        return out

    top = pages[0].module
    return [f"{OUT}/index.md", {top.name: [top.page, *entries(top.name)]}]


# ----------------------------------------------------------------------------- MkDocs events

_PAGES: list[Page] = []


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    root = str(_root())
    if root not in sys.path:
        sys.path.insert(0, root)  # import the package from this checkout
    _SUMMARIES.clear()  # `mkdocs serve` rebuilds in one process
    _PAGES[:] = plan(walk())
    expanded = False
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and NAV_TITLE in item:
            config.nav[i] = {NAV_TITLE: nav_tree(_PAGES)}
            expanded = True
    if not expanded:
        log.warning("mkdocs.yml has no %r nav entry to expand", NAV_TITLE)
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, f"{OUT}/index.md", content=render_index(_PAGES)))
    for page in _PAGES:
        files.append(File.generated(config, page.module.page, content=render(page, _PAGES)))
    return files


def on_page_content(html: str, page, config: MkDocsConfig, files: Files) -> str:  # noqa: ANN001
    """Every name a page promises is on it: a missing one fails ``mkdocs build --strict``."""
    for planned in _PAGES:
        if planned.module.page != page.file.src_uri:
            continue
        names = planned.members + planned.bare
        expected = [f"{planned.module.name}.{name}" for name in names] + planned.extra
        for identifier in expected:
            if f'id="{identifier}"' not in html:
                log.warning("%s: %s is in __all__ but not rendered", page.file.src_uri, identifier)
    return html
