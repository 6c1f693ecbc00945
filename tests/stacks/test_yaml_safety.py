"""Hostile or broken stack files: refused cheaply by the plan CLI with exit 2, one `error:` line per
problem, a position where there is one, no traceback, nothing written."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stacks import yamlio
from stacks.plan import main as plan_main

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3


def run_cli(args, *, mem_limit=None, timeout=120):
    """The plan CLI as a process, optionally under an address-space cap (RLIMIT_AS)."""
    pre = ""
    if mem_limit:
        pre = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({mem_limit}, {mem_limit})); "
    code = pre + "import sys; from stacks.plan import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def bomb(levels: int, width: int, aliases_per_level: int) -> str:
    """A billion-laughs document: each level lists the previous one `aliases_per_level` times."""
    lines = ["config:", f"  l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels + 1):
        lines.append(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * aliases_per_level)}]")
    lines.append(f"  llm-serving:models: {{tiny: {{preset: qwen3-0.6b, extraArgs: *l{levels}}}}}")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_under_a_4_gib_memory_cap(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb(levels=12, width=10, aliases_per_level=10))  # 10^13 strings once expanded
    r = run_cli(["t", "--config", str(f), "--out", str(tmp_path / "out")], mem_limit=4 * GIB)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "MemoryError" not in r.stderr
    # the 17th alias: line 4 (l2 = [*l1 x 10]), column 12 + 6 x 5 = 42
    assert r.stderr.startswith(f"error: {f}:4:42: more than 16 YAML aliases"), r.stderr
    assert not (tmp_path / "out").exists()


def test_alias_budget_inside_the_count_cap_is_still_bounded_by_expansion(tmp_path):
    """16 aliases (3 levels x 5, + 1) over a 1000-item base expand to 125 x 1000 nodes: refused."""
    text = bomb(levels=3, width=1000, aliases_per_level=5)
    with pytest.raises(yamlio.YamlError, match="expands to more than 100000 nodes"):
        yamlio.load_untrusted(text)
    # negative control: the same shape over a small base is an ordinary (if odd) document
    assert len(yamlio.load_untrusted(bomb(levels=3, width=3, aliases_per_level=5))["config"]["l3"]) == 5


def test_deep_nesting_is_refused_before_libyaml_composes_it(tmp_path):
    """libyaml's C composer recurses per level; 200k levels overflowed the C stack (SIGSEGV) before."""
    f = tmp_path / "deep.yaml"
    f.write_text("config:\n  llm-serving:models: " + "[" * 200_000 + "]" * 200_000 + "\n")
    r = run_cli(["t", "--config", str(f)])
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    assert "nesting deeper than 64 levels" in r.stderr


def test_oversized_file_is_refused_without_reading_it_all(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_text("config:\n" + "#" * (yamlio.MAX_BYTES + 10) + "\n")
    assert plan_main(["t", "--config", str(f)]) == 2


@pytest.mark.parametrize(
    "make,expect",
    [
        (lambda d: d, "is a directory, not a stack file"),
        (lambda d: d / "missing.yaml", "no such file"),
    ],
)
def test_config_path_that_is_not_a_file(tmp_path, capsys, make, expect):
    p = make(tmp_path)
    assert plan_main(["t", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {p}: ") and expect in err and " — " in err and err.count("\n") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config(tmp_path, capsys):
    f = tmp_path / "Pulumi.t.yaml"
    f.write_text("config: {}\n")
    f.chmod(0)
    assert plan_main(["t", "--config", str(f)]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_unknown_stack_lists_the_known_ones(capsys):
    assert plan_main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "stacks here: dev" in err and "Traceback" not in err


@pytest.mark.parametrize("stack", ["../../etc/passwd", "a b", "-x", ""])
def test_stack_name_that_could_escape_the_project_dir(capsys, stack):
    assert plan_main(["--", stack] if stack.startswith("-") else [stack]) == 2
    assert "not a stack name" in capsys.readouterr().err


def test_out_that_is_a_file_is_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a directory")
    assert plan_main(["dev", "--out", str(out / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / 'sub'}: ") and "is a file, not a directory" in err
    assert out.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the mode")
def test_unwritable_out(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert plan_main(["dev", "--out", str(ro / "out")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_unwritable_out_as_root_too(tmp_path, capsys):
    """/proc is not writable even for root: the check asks the kernel, not the mode bits."""
    assert plan_main(["dev", "--out", "/proc/llm-serving-out"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_strict_reader_matches_the_safe_loader_on_ordinary_files():
    """Negative control for the strict reader: every committed stack file reads the same as PyYAML's."""
    import yaml

    from tests.conftest import STACK_FILES

    for f in STACK_FILES:
        assert yamlio.load_untrusted(f.read_text()) == yaml.safe_load(f.read_text()), f  # noqa: TID251 (PyYAML's own reader as the reference)


def test_duplicate_keys_and_tags_report_positions():
    text = textwrap.dedent("""\
        config:
          llm-serving:models:
            a: {preset: qwen3-0.6b}
            a: {preset: qwen3-8b}
          x: !!binary aGk=
        """)
    with pytest.raises(yamlio.YamlError) as e:
        yamlio.load_untrusted(text)
    got = [(i.line, i.column, i.path) for i in e.value.issues]
    assert got == [(4, 5, ("config", "llm-serving:models", "a")), (5, 6, ("config", "x"))]


@pytest.mark.parametrize(
    "scalar,refused",
    [
        ("1:30", True),  # base 60: 90 to PyYAML, a string to YAML 1.2
        ("1e3", True),  # a string to PyYAML, 1000.0 to YAML 1.2
        ("yes", True),
        ("Off", True),
        ("0777", True),  # 511 to PyYAML, 777 to YAML 1.2
        ("0o17", True),
        ("1_000", True),
        ("'1:30'", False),
        ('"yes"', False),
        ("true", False),
        ("12", False),
        ("0x1F", False),
        ("-1.5e-3", False),
        ("2026-01-01", False),
    ],
)
def test_scalars_yaml_1_1_and_1_2_read_differently_are_refused(scalar, refused):
    text = f"config:\n  v: {scalar}\n"
    if refused:
        with pytest.raises(yamlio.YamlError, match=r"YAML 1\.1.*YAML 1\.2"):
            yamlio.load_untrusted(text)
    else:
        yamlio.load_untrusted(text)


def test_unsigned_exponent_decimal_reads_as_the_number_yaml_1_2_sees():
    """PyYAML reads 3.0e9 as the string '3.0e9'; Pulumi (YAML 1.2) as 3000000000.0. The plan follows."""
    assert yamlio.load_untrusted("v: 3.0e9\n") == {"v": 3.0e9}
    assert yamlio.load_untrusted("v: '3.0e9'\n") == {"v": "3.0e9"}
