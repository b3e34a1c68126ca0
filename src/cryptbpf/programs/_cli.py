"""Small pieces every program's typer app uses (not a program: modules whose
name starts with "_" are skipped by discovery)."""

from __future__ import annotations


def examples(*lines: str) -> str:
    """A command's epilog: example invocations, one per paragraph."""
    return "Examples:\n\n" + "\n\n".join(f"  {l}" for l in lines)


def pinned(name: str):
    """The pins of loaded program `name`, for an admin subcommand (root
    checked first, so the error says so instead of EPERM)."""
    from .. import lifecycle
    from ..pins import Pinned
    lifecycle.require_privileges()
    return Pinned(name)
