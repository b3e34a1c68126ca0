"""Small pieces every command of the `cryptbpf` CLI uses (not a program:
modules whose name starts with "_" are skipped by discovery).

The CLI is plain click: `-h`/`--help` everywhere, defaults shown, help
wrapped at 80 columns, arguments documented ("Positional arguments:") and
examples kept one per line, never re-wrapped. Usage errors are turned into
one `cryptbpf: ...` line by `cryptbpf.cli.main`.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True,
                    "max_content_width": 80}

PATH = click.Path(path_type=Path)   # a file name, as a pathlib.Path (not checked here)


def examples(*lines: str) -> str:
    """A command's epilog: example invocations, one per line, indented and
    never re-wrapped (click's `\\b` marks the block)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {l}" for l in lines)


# click >= 8.5 lists arguments with their help ("Positional arguments:");
# older versions take no help for them, _HelpMixin lists them the same way.
_NATIVE_ARGUMENT_HELP = "help" in inspect.signature(click.Argument.__init__).parameters


class Argument(click.Argument):
    """A positional argument with a help text."""

    def __init__(self, *args, help: str | None = None, **kw):
        if help and kw.get("default") not in (None, ()):
            help = f"{help}  [default: {kw['default']}]"
        if _NATIVE_ARGUMENT_HELP:
            super().__init__(*args, help=help, **kw)
        else:
            super().__init__(*args, **kw)
        self.help = help


class _HelpMixin:
    def format_options(self, ctx, formatter) -> None:
        if not _NATIVE_ARGUMENT_HELP:
            rows = [(p.human_readable_name, p.help) for p in self.get_params(ctx)
                    if isinstance(p, Argument) and p.help]
            if rows:
                with formatter.section("Positional arguments"):
                    formatter.write_dl(rows)
        super().format_options(ctx, formatter)

    def format_epilog(self, ctx, formatter) -> None:
        # A section like "Options:", not an indented paragraph.
        if self.epilog:
            formatter.write_paragraph()
            formatter.write_text(inspect.cleandoc(self.epilog))


class Command(_HelpMixin, click.Command):
    pass


class Group(_HelpMixin, click.Group):
    command_class = Command
    group_class = type      # subgroups are Groups too

    def __init__(self, *args, **kw):
        kw.setdefault("context_settings", dict(CONTEXT_SETTINGS))
        super().__init__(*args, **kw)

    def format_commands(self, ctx, formatter) -> None:
        # Each command's first sentence in full, wrapped; never cut with "...".
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def group(help: str | None = None, **kw) -> Group:
    """A command group (`cryptbpf <group> ...`); without a subcommand it
    prints its help."""
    return Group(help=help, **kw)


def argument(*decls: str, help: str | None = None, **kw):
    """click.argument with a help text (listed under "Positional arguments:")."""
    return click.argument(*decls, cls=Argument, help=help, **kw)


def json_option(help: str = "Machine-readable output."):
    return click.option("--json", "as_json", is_flag=True, help=help)


def netns_option(help: str = "Network namespace to run in (as with `ip netns exec NS`)."):
    return click.option("--netns", metavar="NS", default=None, help=help)


def pinned(name: str):
    """The pins of loaded program `name`, for an admin subcommand (root
    checked first, so the error says so instead of EPERM)."""
    from .. import lifecycle
    from ..bpf.pins import Pinned
    lifecycle.require_privileges()
    return Pinned(name)
