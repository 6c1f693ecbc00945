"""Model servers and the weights cache over every stack: placement, volumes, caches,
drain and the downloader image. Planner numbers are computed by hand in the comments."""

import pytest

from components.vllm import EXIT_MARGIN_S
from stacks import catalog
from stacks.capacity import planner
from stacks.yamlio import load_yaml
from tests.conftest import STACK_FILES

INST = catalog.instances()


def test_kube_reserved_cpu_and_allocatable_by_hand():
    assert planner.kube_reserved_cpu_m(1) == 60
    assert planner.kube_reserved_cpu_m(4) == 60 + 10 + 5 + 5  # 80
    assert planner.kube_reserved_cpu_m(8) == 80 + 4 * 2.5  # 90
    cpu, mem = planner.allocatable(INST["g6.xlarge"])
    assert cpu == 4000 - 80 - 300  # 3620 m
    # 16384 x 0.925 - (11 x 110 + 255) - 100 - 512 = 15155.2 - 2077 = 13078.2 MiB
    assert mem == pytest.approx(13078.2)


def test_fitting_types_same_pod_same_device_by_hand():
    pool = [INST[n] for n in INST if INST[n].family in ("g5", "g6")]
    # 1 L4, 3 CPU, 12 GiB: every g6 size (all have an L4 and >= 3620 m / 13078 MiB); no g5 (A10G).
    assert planner.fitting_instance_types(INST["g6.xlarge"], 1, 3, 12, pool) == [
        "g6.xlarge",
        "g6.2xlarge",
        "g6.4xlarge",
        "g6.8xlarge",
        "g6.16xlarge",
        "g6.12xlarge",
        "g6.24xlarge",
        "g6.48xlarge",
    ]  # cheapest first: 0.80, 0.98, 1.32, 2.01, 3.40, 4.60, 6.68, 13.35 $/h
    # 4 CPU no longer fits g6.xlarge (3620 m allocatable); 13 GiB = 13312 MiB > 13078 MiB neither.
    assert "g6.xlarge" not in planner.fitting_instance_types(INST["g6.xlarge"], 1, 4, 12, pool)
    assert "g6.xlarge" not in planner.fitting_instance_types(INST["g6.xlarge"], 1, 3, 13, pool)
    # TP 2 needs 2 GPUs: only the 4- and 8-GPU sizes.
    assert planner.fitting_instance_types(INST["g6.12xlarge"], 2, 20, 80, pool) == [
        "g6.12xlarge",
        "g6.24xlarge",
        "g6.48xlarge",
    ]


def test_fitting_types_neuron_keep_the_compile_target():
    pool = [INST[n] for n in INST if INST[n].kind == "neuron"]
    # TP 2 = one Inferentia2 chip; trn1 (Trainium) has the same chip count but another compile target.
    got = planner.fitting_instance_types(INST["inf2.xlarge"], 2, 3, 12, pool)
    assert got == ["inf2.xlarge", "inf2.8xlarge", "inf2.24xlarge", "inf2.48xlarge"]


def test_download_deadline_by_hand():
    m = catalog.models()
    # Qwen3-0.6B: 0.596e9 params x 2 B = 1.19e9 B = 1.110 GiB; 600 + 2 x 1.110 / 0.05 = 644.4 s -> 660 s.
    assert planner.download_deadline_seconds(m["qwen3-0.6b"]) == 660
    # Llama-3.1-70B: 70.55e9 x 2 B = 131.4 GiB; 600 + 2 x 131.4 / 0.05 = 5856 s -> 5880 s (~1.6 h).
    assert planner.download_deadline_seconds(m["llama-3.1-70b-instruct"]) == 5880


def _servers(out):
    for f in sorted((out / "manifests").glob("deployment-*models-*.yaml")):
        yield f.name, load_yaml(f.read_text())["spec"]["template"]["spec"]


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_servers_over_every_stack(stack_file, plan_of):
    intent, _, out = plan_of(stack_file)
    seen = 0
    for name, pod in _servers(out):
        seen += 1
        model = next(m for m in intent.models.values() if f"-{m.name}.yaml" in name)
        c = pod["containers"][0]
        # The planner's own choice is always among the allowed types.
        expr = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][
            0
        ]["matchExpressions"]
        types = next(e["values"] for e in expr if e["key"] == "node.kubernetes.io/instance-type")
        assert model.sizing.instance.name in types, (name, types)
        # No PVC behind two pod volumes.
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert len(claims) == len(set(claims)) == 1, name
        vols = {v["name"]: v for v in pod["volumes"]}
        env = {e["name"]: e.get("value") for e in c["env"]}

        def backing(path, mounts=c["volumeMounts"], vols=vols):
            m = max(
                (m for m in mounts if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")),
                key=lambda m: len(m["mountPath"]),
            )
            return m, vols[m["name"]]

        mount, vol = backing(env["VLLM_CACHE_ROOT"])
        assert "emptyDir" in vol, name  # per pod, never shared by replicas
        # Drain: grace = preStop + --shutdown-timeout + margin.
        args = c["args"]
        drain = int(args[args.index("--shutdown-timeout") + 1]) if "--shutdown-timeout" in args else 0
        assert (
            pod["terminationGracePeriodSeconds"]
            == c["lifecycle"]["preStop"]["sleep"]["seconds"] + drain + EXIT_MARGIN_S
        )
        assert pod["enableServiceLinks"] is False
        if model.kind == "neuron":
            assert drain == 0  # the Neuron image's vLLM 0.16 has no --shutdown-timeout
            mount, vol = backing(env["NEURON_COMPILED_ARTIFACTS"])
            assert "persistentVolumeClaim" in vol and mount.get("subPath") and not mount.get("readOnly")
            mount, vol = backing(env["NEURON_COMPILE_CACHE_URL"])
            assert "emptyDir" in vol and mount["mountPath"] == "/var/tmp"
        else:
            assert drain == model.request_timeout_seconds
    assert seen == len(intent.models)


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_cache_jobs_use_the_small_pinned_downloader_and_their_own_account(stack_file, plan_of):
    intent, _, out = plan_of(stack_file)
    v = catalog.versions()
    objs = [load_yaml(f.read_text()) for f in sorted((out / "manifests").glob("*.yaml"))]
    jobs = [o for o in objs if o["kind"] == "Job"]
    sas = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs if o["kind"] == "ServiceAccount"}
    assert len(jobs) == len(intent.models)
    for j in jobs:
        pod = j["spec"]["template"]["spec"]
        assert {c["image"] for c in pod["containers"] + pod["initContainers"]} == {v.image("hf-downloader")}
        assert pod["initContainers"][0]["command"][-1] == "/etc/model-cache-pip/requirements.lock"
        assert (j["metadata"]["namespace"], pod["serviceAccountName"]) in sas
        assert j["spec"]["activeDeadlineSeconds"] > 0


def test_every_image_we_render_records_its_user_writable_paths_and_sources():
    v = catalog.versions()
    raw = load_yaml((catalog.HERE / "versions.yaml").read_text())["images"]
    for name in ("vllm", "vllm-neuron", "hf-downloader"):
        pin = v.images[name]
        assert pin.user == 2000 and pin.writable_paths and raw[name]["sources"], name
    assert v.huggingface_hub_version and "vllm" not in v.image("hf-downloader")
