"""The `cryptbpf` command line as a conventional CLI (like ip, tc, wg):
usage errors are one `cryptbpf: ...` line with exit status 1 in every
command and group, `-h` and `--version` work, help is plain text wrapped at
80 columns with conventional metavars and examples one per line, status is
structured (JSON) and readable (text), and the peer commands run from a
network namespace. Everything runs the real entry point (run_cli)."""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version

import click
import pytest

from cryptbpf.bpf.maps import MAP_TYPE_NAMES
from cryptbpf.programs import discover

from conftest import require_feature, require_root, run_cli

NO_NS = "cbt-no-such-netns"


def _command_paths() -> list[list[str]]:
    """Every command and group of the CLI, as argument lists."""
    from cryptbpf import cli
    cli._register_program_commands()

    def walk(cmd, path):
        yield path
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, path + [name])
    return list(walk(cli.app, []))


PATHS = _command_paths()


def _run_all(argvs: list[list[str]], **kw) -> list:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda a: run_cli(*a, **kw), argvs))


def _one_line_error(res) -> str:
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryptbpf: "), res.stderr
    assert "Traceback" not in res.stdout + res.stderr and "Usage:" not in res.stderr
    return lines[0]


def test_the_tree_has_every_program_group():
    top = {p[0] for p in PATHS if len(p) == 1}
    for name, spec in discover().items():
        assert set(spec.commands) <= top and (spec.cli is None or name in top), name
    assert len(PATHS) > 60


# ---------------------------------------------------------------- 1. usage errors

USAGE_ERRORS = {
    "missing argument": (["load"], "Missing argument 'PROGRAM'", "cryptbpf load -h"),
    "missing argument, program group": (["pki", "connect", "--cert", "c.pem", "--key", "k.pem"],
                                        "Missing argument 'HOST'", "cryptbpf pki connect -h"),
    "missing required option": (["tunnel", "add-peer", "10.0.0.3"], "Missing option '--key-file'",
                                "cryptbpf tunnel add-peer -h"),
    "missing argument, nested group": (["offload", "keys", "add", "1", "hmac"], "Missing argument 'FILE'",
                                       "cryptbpf offload keys add -h"),
    "not an integer": (["keys", "new", "k", "--size", "lots"], "'lots' is not a valid integer",
                       "cryptbpf keys new -h"),
    "not an integer, peer": (["pow", "send", "127.0.0.1", "http", "x"], "'http' is not a valid integer",
                             "cryptbpf pow send -h"),
    "not a number": (["tunnel", "rekey", "--key-file", "k", "--grace", "soon"], "'soon' is not a valid float",
                     "cryptbpf tunnel rekey -h"),
    "unknown option": (["status", "--jsn"], "No such option '--jsn'", "cryptbpf status -h"),
    "unknown option, program group": (["sign", "send", "--kee", "a.pem"], "No such option '--kee'",
                                      "cryptbpf sign send -h"),
    "bad choice": (["cas", "enforce", "maybe"], "'maybe' is not one of 'on', 'off'", "cryptbpf cas enforce -h"),
    "bad choice, nested group": (["offload", "keys", "add", "1", "md5", "k"], "'md5' is not one of",
                                 "cryptbpf offload keys add -h"),
    "unknown command": (["frobnicate"], "No such command 'frobnicate'", "cryptbpf -h"),
    "unknown subcommand": (["zkp", "frobnicate"], "No such command 'frobnicate'", "cryptbpf zkp -h"),
    "option without a command": (["-v"], "Missing command", "cryptbpf -h"),
    "extra argument": (["programs", "extra"], "unexpected extra argument", "cryptbpf programs -h"),
}


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_error_is_one_line_exit_1(case):
    args, message, see = USAGE_ERRORS[case]
    res = run_cli(*args)
    line = _one_line_error(res)
    assert message in line and f"(see '{see}')" in line, line
    assert res.stdout == ""


def test_every_command_and_group_refuses_an_unknown_option_in_one_line():
    argvs = [p + ["--no-such-option"] for p in PATHS]
    for argv, res in zip(argvs, _run_all(argvs)):
        line = _one_line_error(res)
        # `load` passes unknown options on to the program (they are not
        # known before PROGRAM): there the error names the program instead
        assert ("No such option '--no-such-option'" in line
                or argv[0] == "load" and "unknown program" in line), (argv, line)


def test_load_passes_program_options_through():
    """`--peer`/`--suite` are encrypted-tunnel's own load options: they reach
    the program, which checks them (before anything is loaded)."""
    require_root()
    line = _one_line_error(run_cli("load", "encrypted-tunnel", "cbt-nodev0", "--peer", "10.0.0.2",
                                   "--suite", "rot13"))
    assert "unknown suite 'rot13'" in line, line
    line = _one_line_error(run_cli("load", "content-verifier", "cbt-nodev0", "--peer", "10.0.0.2"))
    assert "content-verifier has no option --peer" in line, line


# ---------------------------------------------------------------- 2. -h, --version, bare groups

def test_version():
    res = run_cli("--version")
    assert (res.returncode, res.stdout, res.stderr) == (0, f"cryptbpf {version('cryptbpf')}\n", "")


@pytest.mark.parametrize("group", [[], ["tunnel"], ["offload", "keys"], ["keys"]])
def test_bare_group_prints_help_to_stdout_and_exits_0(group):
    res = run_cli(*group)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.startswith(f"Usage: {' '.join(['cryptbpf'] + group)} ") and "Commands:" in res.stdout
    assert res.stdout == run_cli(*group, "-h").stdout


# ---------------------------------------------------------------- 3. help text

PYTHON_TYPES = re.compile(r"<(bool|str|int|float|path|list\[\w+\])>|\b(list|dict|tuple)\[|Sentinel|NoneType")
# click's own metavars for typed values: the CLI names every value instead
CLICK_METAVARS = re.compile(r"^\s+(-\w, )?--[\w-]+ (TEXT|INTEGER|FLOAT|PATH|BOOLEAN|FILENAME|\[\w+(\|\w+)+\])\b")
BOX = re.compile("[\u2500-\u257f\u2580-\u259f]|\x1b\\[")


def _examples(help_text: str) -> list[str]:
    _, sep, rest = help_text.partition("\nExamples:\n\n")
    return rest.rstrip("\n").split("\n") if sep else []


def test_h_is_help_plain_conventional_and_wrapped_at_80_columns():
    """-h everywhere; no colours or boxes even where a terminal would get them."""
    env = {**os.environ, "COLUMNS": "200", "FORCE_COLOR": "1", "TERM": "xterm-256color"}
    results = _run_all([p + ["-h"] for p in PATHS], env=env)
    with_examples = 0
    for path, res in zip(PATHS, results):
        assert res.returncode == 0 and res.stderr == "", (path, res.stderr)
        text = res.stdout
        assert text.startswith(f"Usage: {' '.join(['cryptbpf'] + path)} "), (path, text[:200])
        assert not BOX.search(text), (path, text)
        assert not PYTHON_TYPES.search(text), (path, PYTHON_TYPES.search(text).group(0))
        for line in text.splitlines():
            assert not CLICK_METAVARS.search(line), (path, line)
        examples = _examples(text)
        with_examples += bool(examples)
        for ex in examples:
            # one whole command per line, indented, never wrapped mid-command
            assert re.match(r"^  \S", ex) and "cryptbpf " in ex, (path, ex)
        for line in text.splitlines():
            assert len(line) <= 80 or line in examples, (path, line)
    assert with_examples > 50
    flags = run_cli("status", "-h").stdout
    assert re.search(r"^  --json +Machine-readable output\.$", flags, re.M), flags   # no <bool>
    for path in (["load"], ["tunnel"], ["offload", "keys", "add"]):
        assert run_cli(*path, "-h").stdout == run_cli(*path, "--help").stdout


def test_examples_keep_their_own_lines():
    text = run_cli("load", "-h").stdout
    assert _examples(text) == [
        "  sudo cryptbpf load aes-roundtrip eth0 --key-file aes.key",
        "  sudo cryptbpf load aes-roundtrip veth0 --netns blue --set udp_port=5000",
        "  sudo cryptbpf load encrypted-tunnel eth0 --key-file t.key --peer 10.0.0.2",
        "  sudo cryptbpf load encrypted-logger --key-file log.key"]
    assert "  --key-file FILE " in text and "  --set NAME=VALUE " in text and "  PROGRAM " in text


# ---------------------------------------------------------------- 5. status, map

def test_status_is_structured_json_and_readable_text(veth_pair):
    require_root()
    spec = discover()["content-verifier"]
    for f in spec.requires:
        require_feature(f)
    ns, dev = veth_pair.ns_b, veth_pair.dev_b
    run_cli("load", spec.name, dev, "--netns", ns, check=True)
    try:
        data = json.loads(run_cli("status", "--json", check=True).stdout)
        (entry,) = [e for e in data if e["program"] == spec.name]
        (hook,) = entry["devices"][f"{ns}/{dev}"]
        assert hook["kind"] == "xdp" and hook["mode"] in ("skb", "drv", "hw")
        assert isinstance(hook["prog_id"], int) and hook["prog_id"] > 0
        assert entry["allowlist"] == {"ids": 0, "enforced": False}
        assert entry["stats"] and all(isinstance(v, int) for v in entry["stats"].values())

        text = run_cli("status", check=True).stdout
        block = next(b for b in re.split(r"\n(?=\S)", text) if b.startswith(spec.name + "\n"))
        assert not re.search(r"[{}\[\]']", block), block          # no Python reprs
        assert re.search(rf"^  {re.escape(ns)}/{dev}: xdp \({hook['mode']}.*prog id {hook['prog_id']}\)$",
                         block, re.M), block
        assert re.search(r"^  allowlist:\n    ids: +0\n    enforced: +no$", block, re.M), block
        assert re.search(r"^  stats:\n    \w+: +0$", block, re.M), block

        maps = run_cli("map", spec.name, check=True).stdout.splitlines()
        types = {line.split()[0]: line.split()[1] for line in maps}
        assert set(types.values()) <= set(MAP_TYPE_NAMES), types
        assert types["allowlist"] == "hash" and types["stats"] == "percpu_array", types
    finally:
        run_cli("unload", spec.name, check=True)


# ---------------------------------------------------------------- 6. --netns on the peer commands

# host_only: CLI plumbing, kernel-independent; its receiver starts the CLI in
# a worker thread, where the emulated guest's CLI skip cannot reach pytest
@pytest.mark.host_only
def test_cas_send_and_recv_from_namespaces(veth_pair, tmp_path):
    """content-verifier is not loaded: both ends of a transfer, each run
    from the host's namespace with --netns, over the veth pair."""
    require_root()
    port = 7391
    src, out = tmp_path / "data.bin", tmp_path / "got.bin"
    src.write_bytes(os.urandom(5000))
    with ThreadPoolExecutor(1) as pool:
        rx = pool.submit(run_cli, "cas", "recv", str(out), "--netns", veth_pair.ns_b,
                         "--port", str(port), "--timeout", "10")
        _wait_bound(veth_pair.ns_b, port)
        tx = run_cli("cas", "send", str(src), veth_pair.addr_b, str(port), "--netns", veth_pair.ns_a,
                     "--linger", "3")
        rx = rx.result(timeout=60)
    assert tx.returncode == 0 and rx.returncode == 0, (tx.stderr, rx.stderr)
    assert "receiver confirmed the whole file" in tx.stdout
    assert out.read_bytes() == src.read_bytes()


def _wait_bound(netns: str, port: int, timeout: float = 15.0) -> None:
    import subprocess
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hlun", f"sport = :{port}"],
                          capture_output=True, text=True).stdout.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing bound to UDP port {port} in {netns}")


def test_peer_commands_refuse_a_missing_namespace_in_one_line(tmp_path):
    priv = tmp_path / "a.pem"
    run_cli("keys", "generate", str(priv), check=True)
    secret = tmp_path / "s.key"
    run_cli("keys", "new", str(secret), check=True)
    run_cli("pki", "demo-ca", str(tmp_path / "pki"), check=True)
    pki = tmp_path / "pki"
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 100)
    argvs = [
        ["sign", "send", "--key", str(priv), "--id", "1", "127.0.0.1", "9", "x"],
        ["pki", "connect", "127.0.0.1", "9", "--cert", str(pki / "leaf.pem"), "--chain",
         str(pki / "chain.pem"), "--key", str(pki / "leaf.key")],
        ["zkp", "connect", "127.0.0.1", "9", "--secret-file", str(secret), "--key-id", "1"],
        ["pow", "send", "127.0.0.1", "9", "x"],
        ["cas", "send", str(data), "127.0.0.1", "9"],
        ["cas", "recv", str(tmp_path / "out.bin"), "--port", "9"],
        ["offload", "request", "sha256", "127.0.0.1", "--data", "x"],
    ]
    for argv, res in zip(argvs, _run_all([a + ["--netns", NO_NS] for a in argvs])):
        line = _one_line_error(res)
        assert f"network namespace {NO_NS!r} does not exist" in line, (argv, line)


# ---------------------------------------------------------------- 7. keys install, per program

@pytest.mark.parametrize("program,instead", [("encrypted-tunnel", "cryptbpf tunnel rekey"),
                                             ("encrypted-logger", "cryptbpf logs rotate")])
def test_keys_install_says_what_to_use_instead(program, instead, tmp_path):
    key = tmp_path / "k"
    run_cli("keys", "new", str(key), check=True)
    line = _one_line_error(run_cli("keys", "install", program, "--key-file", str(key)))
    assert line.startswith(f"cryptbpf: {program}: ") and instead in line, line


def test_program_commands_by_either_name():
    """`cryptbpf <program> ...` and its short alias (`cryptbpf pow ...`)
    reach the same commands."""
    top = {p[0]: p for p in PATHS if len(p) == 1}
    from cryptbpf import cli
    aliases = 0
    for name, spec in discover().items():
        assert name in top or not (spec.cli or spec.commands), f"no `cryptbpf {name}`"
        for alias, group in spec.commands.items():
            if group is not spec.cli:
                continue
            aliases += 1
            by_name, by_alias = cli.app.commands[name], cli.app.commands[alias]
            assert by_alias.commands is by_name.commands, alias
            assert {tuple(p[1:]) for p in PATHS if p[:1] == [alias]} == \
                {tuple(p[1:]) for p in PATHS if p[:1] == [name]}, alias
            helps = _run_all([[name, "-h"], [alias, "-h"]], check=True)
            assert helps[0].stdout.replace(f"cryptbpf {name}", "cryptbpf X") == \
                helps[1].stdout.replace(f"cryptbpf {alias}", "cryptbpf X"), alias
    assert aliases >= 7     # tunnel, pki, pow, zkp, cas, logs, offload
