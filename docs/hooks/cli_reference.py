"""MkDocs hook: the command-line reference, generated from the Typer app at every build.

``typer.main.get_command(audioar_cli.main.app)`` gives the click command tree; this hook
walks its commands and sub-groups (in the order the app registers them) and writes
``cli.md``: per command its usage line, its help text, and tables of its arguments and
options (with types and defaults as ``--help`` shows them). Nothing here names a command,
so a new command or option appears in the reference by itself.
"""

from __future__ import annotations

import html
import logging
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGE = "cli.md"
PROGRAM = "audioar"

log = logging.getLogger(f"mkdocs.hooks.{Path(__file__).stem}")


def _text(value: str) -> str:
    """Help text as Markdown: HTML-escaped (``<name>`` is text, not a tag), brackets outside
    code spans escaped (``[model]`` is text, not a link)."""
    parts = html.escape(value, quote=False).split("`")
    for i in range(0, len(parts), 2):  # outside backticks
        parts[i] = parts[i].replace("[", "\\[").replace("]", "\\]")
    return "`".join(parts)


def _cell(value: str) -> str:
    return _text(" ".join(value.split())).replace("|", "\\|")


def _usage(command: Any, path: str, params: list[Any]) -> str:
    """``audioar score [OPTIONS] PATHS...``, from the command's parameters."""
    pieces = [path]
    if any(p.param_type_name == "option" for p in params):
        pieces.append("[OPTIONS]")
    for param in params:
        if param.param_type_name != "argument":
            continue
        name = (param.metavar or param.name).upper()
        if param.nargs == -1:
            name += "..."
        pieces.append(name if param.required else f"[{name}]")
    if hasattr(command, "commands"):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _table(ctx: Any, params: list[Any], kind: str) -> list[str]:
    rows = []
    for param in params:
        if param.param_type_name != kind or getattr(param, "hidden", False):
            continue
        if param.name == "help":
            continue
        record = param.get_help_record(ctx)
        help_text = record[1] if record else (getattr(param, "help", "") or "")
        if kind == "option":
            names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
        else:
            names = f"`{(param.metavar or param.name).upper()}`"
        shown_type = param.display_type(ctx) if _takes_ctx(param.display_type) else ""
        shown_type = shown_type.strip("<>")
        if getattr(param, "is_flag", False):
            shown_type = "flag"
        rows.append(f"| {names} | {_cell(shown_type)} | {_cell(help_text)} |")
    if not rows:
        return []
    title = "Arguments" if kind == "argument" else "Options"
    head = "argument" if kind == "argument" else "option"
    return [f"**{title}**", "", f"| {head} | type | description |", "|---|---|---|", *rows, ""]


def _takes_ctx(method: Any) -> bool:
    code = getattr(method, "__code__", None)
    return code is not None and "ctx" in code.co_varnames[: code.co_argcount]


def render_command(command: Any, ctx: Any, path: str, level: int) -> list[str]:
    params = [p for p in command.get_params(ctx)]
    lines = [f"{'#' * level} `{path}`", ""]
    help_text = (command.help or "").strip()
    if help_text:
        lines += [_text(help_text), ""]
    lines += ["```text", _usage(command, path, params), "```", ""]
    lines += _table(ctx, params, "argument")
    lines += _table(ctx, params, "option")
    if command.epilog:
        lines += [_text(command.epilog.strip()), ""]
    for name, sub in getattr(command, "commands", {}).items():
        if getattr(sub, "hidden", False):
            continue
        sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
        lines += render_command(sub, sub_ctx, f"{path} {name}", min(level + 1, 4))
    return lines


def render() -> str:
    import typer
    from audioar_cli.main import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name=PROGRAM)
    lines = [
        "# Command line",
        "",
        f"Generated at build time from the Typer app (`audioar_cli.main.app`, by"
        f" `docs/hooks/{Path(__file__).name}`): every command of `{PROGRAM} --help`, with its"
        " usage, help and options. `torchrun --nproc-per-node N -m audioar_cli fit ...` runs"
        " `fit` on several processes (see [Data, features and runs]"
        "(concepts/data.md#several-processes-or-machines)).",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for path, command in _walk(root, PROGRAM):
        summary = _cell((command.help or "").strip().split("\n\n")[0])
        anchor = path.replace(" ", "-")
        lines.append(f"| [`{path}`](#{anchor}) | {summary} |")
    lines.append("")
    body = render_command(root, ctx, PROGRAM, 2)
    # headings get stable anchors: "audioar-data-synth"
    out = []
    for line in body:
        if line.startswith("#") and "`" in line:
            path = line.split("`")[1]
            line = f"{line} {{ #{path.replace(' ', '-')} }}"
        out.append(line)
    return "\n".join(lines + out) + "\n"


def _walk(command: Any, path: str) -> list[tuple[str, Any]]:
    out = []
    for name, sub in getattr(command, "commands", {}).items():
        if getattr(sub, "hidden", False):
            continue
        out.append((f"{path} {name}", sub))
        out += _walk(sub, f"{path} {name}")
    return out


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, PAGE, content=render()))
    return files
