"""Generated reference pages of the documentation: the CLI and the config fields.

A mkdocs hook (``hooks:`` in ``mkdocs.yml``): a page holding a marker such as
``<!-- generated: cli -->`` gets the marker replaced by Markdown built from the code itself, so the
reference cannot drift from it. ``cli`` walks the typer app's command tree (help text, arguments,
options and defaults); ``config`` reads the config dataclasses (fields, types, defaults and the
comment beside each field); ``presets`` lists the shipped YAML presets; ``demo`` lists the demo's
overrides. Run as a script to print one of them: ``python docs/hooks/reference.py cli``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
import textwrap

MARKER = re.compile(r"<!-- generated: (\w[\w-]*) -->")
SKIPPED_OPTIONS = {"--help", "--install-completion", "--show-completion"}


def _escape(text: str) -> str:
    """Plain help text → Markdown that shows it as written (table-safe)."""
    for char in ("\\", "*", "_", "`", "|", "["):
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


# -- CLI ------------------------------------------------------------------------------------------


def _help_paragraphs(help_text: str) -> list[str]:
    """A command's help → Markdown blocks; ``Example: CMD  (note)`` becomes a code block."""
    blocks = []
    for paragraph in textwrap.dedent(help_text).strip().split("\n\n"):
        while "Example: " in paragraph:
            before, _, rest = paragraph.partition("Example: ")
            line, _, after = rest.partition("\n")
            command, *note = re.split(r"\s{2,}", line.strip(), maxsplit=1)  # "CMD  (a note)"
            note = note[0] if note else ""
            if before.strip():
                blocks.append(_escape(before.strip()))
            blocks.append(f"Example:\n\n```bash\n{command}\n```")
            if note:
                blocks.append(_escape(note))
            paragraph = after
        if paragraph.strip():
            blocks.append(_escape(paragraph.strip()))
    return blocks


def _param_row(param, ctx) -> str | None:
    record = param.get_help_record(ctx)
    if record is None:  # hidden
        return None
    names, help_text = record
    if names.split(" <")[0] in SKIPPED_OPTIONS:
        return None
    default = ""
    if match := re.search(r"\s*\[default: (.*?)\]\s*$", help_text):
        default, help_text = match[1], help_text[: match.start()]
    required = bool(re.search(r"\s*\[required\]\s*$", help_text))
    help_text = re.sub(r"\s*\[required\]\s*$", "", help_text)
    shown = f"`{names}`" + (" (required)" if required else "")
    return f"| {shown} | {_escape(help_text)} | {f'`{default}`' if default else ''} |"


def _command_section(command, ctx) -> list[str]:
    lines = [f"## `{ctx.command_path}`", ""]
    for block in _help_paragraphs(command.help or ""):
        lines += [block, ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines += ["```text", f"{ctx.command_path} {usage}", "```", ""]
    rows = [row for p in command.get_params(ctx) if (row := _param_row(p, ctx))]
    if rows:
        lines += [
            "| argument / option | what it does | default |",
            "| --- | --- | --- |",
            *rows,
            "",
        ]
    return lines


def cli_reference() -> str:
    """Markdown for every ``viscoin`` command, walking the typer app's command tree."""
    import typer.main

    from viscoin.cli import app

    lines: list[str] = []

    def walk(command, name, parent=None):
        ctx = command.make_context(name, [], parent=parent, resilient_parsing=True)
        subcommands = command.list_commands(ctx) if hasattr(command, "list_commands") else []
        if parent is not None and not subcommands:
            lines.extend(_command_section(command, ctx))
        elif parent is not None:
            lines.extend([f"# `{ctx.command_path}`", "", _escape(command.help or ""), ""])
        for sub in subcommands:
            walk(command.get_command(ctx, sub), sub, ctx)

    walk(typer.main.get_command(app), "viscoin")
    return "\n".join(lines)


# -- config ---------------------------------------------------------------------------------------


def _field_comments(cls) -> dict[str, str]:
    """The comment of each dataclass field: the ``#`` lines right above it and on its own lines
    (a one-line comment of at most three words above a field heads a group and is left out)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        above = []
        row = node.lineno - 2
        while row >= 0 and lines[row].strip().startswith("#"):
            above.insert(0, lines[row].strip().lstrip("#").strip())
            row -= 1
        inline = [
            line.split("#", 1)[1].strip()
            for line in lines[node.lineno - 1 : node.end_lineno]
            if "#" in line and not line.strip().startswith("#")
        ]
        if len(above) == 1 and len(above[0].split()) <= 3:
            above = []  # a group heading ("# training", "# optimisation"), not this field's
        comments[node.target.id] = " ".join(above + inline)
    return comments


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return ""
    return f"`{value!r}`"


def config_reference() -> str:
    """Markdown tables of every config section: field, type, default and its comment."""
    from viscoin.config import Config

    lines: list[str] = []
    for section in dataclasses.fields(Config):
        cls = section.default_factory
        comments = _field_comments(cls)
        lines += [f"### `{section.name}`", "", _escape(inspect.getdoc(cls) or ""), ""]
        lines += ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
        for field in dataclasses.fields(cls):
            kind = _escape(str(field.type))
            comment = _escape(comments.get(field.name, ""))
            lines.append(
                f"| `{section.name}.{field.name}` | {kind} | {_default(field)} | {comment} |"
            )
        lines.append("")
    return "\n".join(lines)


def presets_reference() -> str:
    """Each shipped YAML preset, as written."""
    from viscoin.config import PRESETS_DIR, available_presets

    lines: list[str] = []
    for name in available_presets():
        text = (PRESETS_DIR / f"{name}.yaml").read_text().rstrip()
        lines += [f"### `{name}`", "", "```yaml", text, "```", ""]
    return "\n".join(lines)


def demo_reference() -> str:
    """The demo's preset (printed with the others above), then the overrides of ``--quick``."""
    from viscoin.demo import PRESET, QUICK

    lines = [
        f"`viscoin demo` uses the `{PRESET}` preset above (`viscoin config show --config {PRESET}`).",
        "",
    ]
    lines += ["`viscoin demo --quick` adds (`viscoin.demo.QUICK`):", "", "```text", *QUICK, "```"]
    return "\n".join(lines)


GENERATORS = {
    "cli": cli_reference,
    "config": config_reference,
    "presets": presets_reference,
    "demo": demo_reference,
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    """mkdocs hook: replace each ``<!-- generated: NAME -->`` marker by its generated Markdown."""

    def replace(match: re.Match) -> str:
        name = match[1]
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown generated section '{name}'")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)


if __name__ == "__main__":
    print(GENERATORS[sys.argv[1] if len(sys.argv) > 1 else "cli"]())
