"""Startup phases (stacks/capacity/startup.py): hand-computed phases for one model, the weight-source
parameter, and the deploy rule that the rendered startupProbe covers what runs in the container."""

import pytest

from stacks import catalog
from stacks.capacity import startup
from stacks.yamlio import load_yaml
from tests.conftest import STACK_FILES

M = catalog.models()
I = catalog.instances()  # noqa: E741
LLAMA = M["llama-3.1-8b-instruct"]
# Llama-3.1-8B bf16: 8.03e9 params x 2 bytes = 16.06e9 B = 14.957 GiB.
LLAMA_GIB = 8.03e9 * 2 / 2**30


def test_llama_8b_on_g5_by_hand():
    p = startup.plan(LLAMA, I["g5.xlarge"])
    want = {
        "node launch": 150,  # g5 row
        "image pull": 10 * 1024 / 55,  # 10 GiB at 55 MiB/s = 186.2 s
        "weight load": LLAMA_GIB * 1024 / 350,  # EFS at 350 MiB/s = 43.8 s
        "compile": 120,
        "graph capture": 60,
        "readiness": 20,  # two 10 s probe periods
    }
    assert [ph.name for ph in p.phases] == list(want)
    for name, s in want.items():
        assert p.seconds(name) == pytest.approx(s, abs=0.01), name
    assert p.total == pytest.approx(579.94, abs=0.01)
    assert p.in_pod == pytest.approx(243.76, abs=0.01)


def test_neuron_first_start_compiles_and_a_cached_one_loads():
    first = startup.plan(LLAMA, I["inf2.8xlarge"])
    assert first.seconds("compile") == pytest.approx(LLAMA_GIB * 60, abs=0.01)  # 897.4 s
    assert first.seconds("graph capture") == 300
    assert first.seconds("image pull") == pytest.approx(6 * 1024 / 55, abs=0.01)
    cached = startup.plan(LLAMA, I["inf2.8xlarge"], neuron_cached=True)
    assert cached.seconds("compile") == 120
    assert cached.total == pytest.approx(first.total - LLAMA_GIB * 60 + 120, abs=0.01)


def test_weight_source_is_a_parameter():
    """A loader with its own throughput (an S3 streamer) passes it; the catalog's s3 row by name too."""
    fast = startup.plan(LLAMA, I["g5.xlarge"], source=startup.WeightSource("s3", 2800))
    assert fast.seconds("weight load") == pytest.approx(LLAMA_GIB * 1024 / 2800, abs=0.01)  # 5.47 s
    assert startup.weight_source("s3") == startup.WeightSource("s3", 2800)
    assert "from s3 at 2800 MiB/s" in next(p.basis for p in fast.phases if p.name == "weight load")


def test_unknown_family_takes_the_default_row():
    import dataclasses

    odd = dataclasses.replace(I["g5.xlarge"], family="g99")
    assert startup.plan(LLAMA, odd).seconds("node launch") == 180


def test_every_catalog_row_is_sourced():
    doc = load_yaml(startup.CATALOG.read_text())
    rows = [doc["nodeLaunch"]["default"], *doc["nodeLaunch"]["families"].values(), doc["imagePull"]]
    rows += [*doc["imagePull"]["images"].values(), *doc["weightSources"].values(), *doc["compile"].values()]
    assert all(r["source"].strip() for r in rows)
    # every pinned server image has a size row, every catalog family a launch row
    assert set(doc["imagePull"]["images"]) == {"vllm", "vllm-neuron"}
    assert set(catalog.families()) <= set(doc["nodeLaunch"]["families"])


def test_probe_cover_rule_and_its_negative_control():
    p = startup.plan(LLAMA, I["g5.xlarge"])  # 243.76 s in the container
    assert startup.probe_seconds(480) == 480 and startup.probe_covers(p, 480)
    assert startup.probe_seconds(241) == 250 and startup.probe_covers(p, 241)  # 25 x 10 s
    assert not startup.probe_covers(p, 240)  # 24 x 10 s = 240 < 244


def test_plan_lines_show_phases_total_and_cover():
    row = {"name": "m", "startup": startup.summary_of(startup.plan(LLAMA, I["g5.xlarge"]), 480)}
    (line,) = startup.lines([row])
    assert line.startswith("startup m: node launch 150s + image pull 186s + weight load 44s + compile 120s")
    assert "= 580s on a new node; startupProbe 480s covers the 244s in the container (x2.0" in line
    bad = {"name": "m", "startup": startup.summary_of(startup.plan(LLAMA, I["g5.xlarge"]), 200)}
    assert "startupProbe 200s DOES NOT cover the 244s" in startup.lines([bad])[0]


def deployments(out) -> list[dict]:
    docs = [load_yaml(f.read_text()) for f in sorted((out / "manifests").glob("*.yaml"))]
    return [
        d
        for d in docs
        if d and d.get("kind") == "Deployment" and d["spec"]["template"]["spec"]["containers"][0]["name"] == "vllm"
    ]


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_rendered_startup_probe_covers_the_planned_phases(stack_file, plan_of):
    """Deploy rule: the kubelet restarts a container whose startupProbe fails failureThreshold times in a
    row, so failureThreshold x period must outlast weight load + compile + graph capture + readiness."""
    intent, _, out = plan_of(stack_file)
    by_name = {d["metadata"]["name"]: d for d in deployments(out)}
    for name, m in intent.models.items():
        assert name in by_name, f"{stack_file.name}: no Deployment {name}"
        probe = by_name[name]["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
        allowed = probe["failureThreshold"] * probe["periodSeconds"]
        need = startup.plan(m.arch, m.sizing.instance, m.quantization).in_pod
        assert allowed >= need, f"{stack_file.name} {name}: startupProbe {allowed}s < {need:.0f}s"
