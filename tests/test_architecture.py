"""Import directions of the package, read from the source with `ast` (never
by importing it): the binding and loader (cryptbpf.bpf) know no program,
CLI or lifecycle, one program's package never imports another's, and the
lifecycle imports no particular program."""

from __future__ import annotations

import ast
from pathlib import Path

import cryptbpf

PKG = Path(cryptbpf.__file__).parent


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> every cryptbpf module it imports (at the top or inside a
    function), `from x import y` counted as x and x.y."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        mod = _module(path)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}
        out[mod] = {m for m in found if m == "cryptbpf" or m.startswith("cryptbpf.")}
    return out


IMPORTS = _imports()
PROGRAMS = sorted({m.split(".")[2] for m in IMPORTS if m.count(".") >= 3
                   and m.startswith("cryptbpf.programs.")})


def _within(mod: str, package: str) -> bool:
    return mod == package or mod.startswith(package + ".")


def test_the_scan_sees_the_tree():
    assert len(PROGRAMS) >= 9 and "encrypted_tunnel" in PROGRAMS
    assert any(_within(m, "cryptbpf.bpf") for m in IMPORTS)
    assert "cryptbpf.bpf.object" in IMPORTS["cryptbpf.bpf.pins"]
    assert "cryptbpf.programs.crypto_ratelimit.control" in \
        IMPORTS["cryptbpf.programs.crypto_ratelimit.cli"]
    assert sum(len(v) for v in IMPORTS.values()) > 200


def test_bpf_knows_no_program_cli_or_lifecycle():
    bpf = [m for m in IMPORTS if _within(m, "cryptbpf.bpf")]
    assert len(bpf) >= 12
    for mod in bpf:
        for target in IMPORTS[mod]:
            assert not any(_within(target, f"cryptbpf.{p}") for p in
                           ("programs", "cli", "lifecycle", "demo", "doctor", "bench")), \
                f"{mod} imports {target}"


def test_no_program_imports_another():
    """... and the lifecycle, generic over ProgramSpec, imports none."""
    for target in IMPORTS["cryptbpf.lifecycle"]:
        assert not any(_within(target, f"cryptbpf.programs.{p}") for p in PROGRAMS), target
    checked = 0
    for prog in PROGRAMS:
        own = f"cryptbpf.programs.{prog}"
        for mod in (m for m in IMPORTS if _within(m, own)):
            for target in IMPORTS[mod]:
                for other in PROGRAMS:
                    if other != prog:
                        assert not _within(target, f"cryptbpf.programs.{other}"), \
                            f"{mod} imports {target}"
                checked += 1
    assert checked > 100
