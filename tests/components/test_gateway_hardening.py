"""Gateway and UI pods: the user, read-only root and writable paths they run with, LiteLLM's
retry/metrics settings, per-object checkov skips and image digests. Expected values are written
out by hand (from the image facts in versions.yaml's sources), not derived from the code."""

import pydantic
import pytest

from components.litellm import render_gateway_pod, render_litellm_config
from components.types import ImagePin, Route, checkov_skips, image_skips
from components.webui import render_webui_pod
from stacks import catalog
from stacks.yamlio import load_yaml
from tests.conftest import ROOT

LITELLM_WRITABLE = {"/tmp", "/var/lib/litellm/metrics", "/var/lib/litellm/migrations"}
DIGEST = "sha256:" + "ab" * 32


def _container(pod):
    return pod["containers"][0]


def _env(pod):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(pod)["env"]}


def _empty_dir_mounts(pod):
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    return {m["mountPath"] for m in _container(pod)["volumeMounts"] if m["name"] in empty}


def test_litellm_runs_the_non_root_image_as_its_user_on_a_read_only_root():
    pin = catalog.versions().images["litellm"]
    pod = render_gateway_pod(pin, replicas=2, database=True, system_taint="T")
    c = _container(pod)
    assert c["image"] == "ghcr.io/berriai/litellm-non_root:v1.106.12"
    assert pod["securityContext"]["runAsUser"] == c["securityContext"]["runAsUser"] == 65534
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert _empty_dir_mounts(pod) == LITELLM_WRITABLE == set(pin.writable_paths)


def test_litellm_env_redirects_every_write_into_an_emptydir():
    pin = catalog.versions().images["litellm"]
    db = _env(render_gateway_pod(pin, replicas=2, database=True, system_taint="T"))
    nodb = _env(render_gateway_pod(pin, replicas=2, database=False, system_taint="T"))
    assert db["PROMETHEUS_MULTIPROC_DIR"] == nodb["PROMETHEUS_MULTIPROC_DIR"] == "/var/lib/litellm/metrics"
    assert db["LITELLM_MIGRATION_DIR"] == "/var/lib/litellm/migrations" and "LITELLM_MIGRATION_DIR" not in nodb
    assert db["HOME"] == "/tmp" and db["XDG_CACHE_HOME"] == "/tmp/.cache"
    assert "secretKeyRef" in db["DATABASE_URL"] and "DATABASE_URL" not in nodb
    # Production log level (INFO logs every request); never DEBUG.
    assert db["LITELLM_LOG"] == "WARNING"
    # The image's baked Prisma paths (/opt/prisma) are left alone.
    assert not any(k.startswith("PRISMA_") for k in db)


def test_litellm_workers_share_one_metrics_registry_and_tolerate_a_slow_start():
    pod = render_gateway_pod(catalog.versions().images["litellm"], replicas=2, database=False, system_taint="T")
    args = _container(pod)["args"]
    assert args[args.index("--num_workers") + 1] == "2"
    assert args[args.index("--timeout_worker_healthcheck") + 1] == "60"


def test_litellm_retries_once_on_another_replica_and_guards_metrics():
    cfg = render_litellm_config([Route("a", "a", "a.models.svc.cluster.local", 8000, 120, 4096)], database=False)
    assert cfg["router_settings"]["num_retries"] == 1
    assert cfg["router_settings"]["enable_weighted_failover"] is True
    assert cfg["router_settings"]["routing_strategy"] == "simple-shuffle"  # failover is simple-shuffle only
    assert cfg["litellm_settings"]["require_auth_for_metrics_endpoint"] is True
    assert cfg["litellm_settings"]["callbacks"] == ["prometheus", "usage_chunk.usage_chunk"]


def test_webui_offline_own_account_read_only_and_data_off_the_baked_caches():
    pin = catalog.versions().images["open-webui"]
    pod = render_webui_pod(pin, gateway_url="http://gw:4000", system_taint="T")
    c, env = _container(pod), _env(pod)
    assert pod["serviceAccountName"] == "open-webui" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] == 1000 and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert env["OFFLINE_MODE"] == "true" and env["HF_HUB_OFFLINE"] == "1"
    assert env["RAG_EMBEDDING_MODEL_AUTO_UPDATE"] == "false" and env["RAG_RERANKING_MODEL_AUTO_UPDATE"] == "false"
    data = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "data")
    assert data == env["DATA_DIR"] == "/var/lib/open-webui"
    # Nothing is mounted over /app/backend/data, where the image bakes its embedding/tiktoken caches.
    assert not any(m["mountPath"].startswith("/app") for m in c["volumeMounts"])
    writable = _empty_dir_mounts(pod) | {data}
    assert writable == {"/tmp", "/var/lib/open-webui"} == set(pin.writable_paths)


def test_image_ref_carries_the_digest_when_pinned():
    assert ImagePin("r/x", "v1").ref == "r/x:v1"
    assert ImagePin("r/x", "v1", digest=DIGEST).ref == f"r/x:v1@{DIGEST}"
    pod = render_gateway_pod(
        ImagePin("r/x", "v1", user=65534, digest=DIGEST), replicas=2, database=False, system_taint="T"
    )
    assert _container(pod)["image"] == f"r/x:v1@{DIGEST}"


def test_catalog_digest_must_be_a_sha256():
    from stacks.catalog import _ImageRow

    assert _ImageRow(repository="r", tag="v1", digest=DIGEST).digest == DIGEST
    with pytest.raises(pydantic.ValidationError):
        _ImageRow(repository="r", tag="v1", digest="sha256:abc")


def test_checkov_skips_are_annotations_checkov_can_parse():
    ann = checkov_skips({"CKV_K8S_35": "env only", "CKV_K8S_11": "no cpu limit"})
    assert ann == {"checkov.io/skip1": "CKV_K8S_11=no cpu limit", "checkov.io/skip2": "CKV_K8S_35=env only"}
    with pytest.raises(ValueError):
        checkov_skips({"CKV_K8S_11": "a=b"})  # checkov splits the value on '='
    assert set(image_skips("r/x:v1")) == {"CKV_K8S_43", "CKV_K8S_15"}
    assert image_skips(f"r/x:v1@{DIGEST}") == {}


def test_no_global_checkov_skips():
    cfg = load_yaml((ROOT / ".checkov.yaml").read_text())
    assert "skip-check" not in cfg and cfg["framework"] == ["kubernetes"]
