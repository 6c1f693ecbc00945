"""No two Kubernetes objects of a plan share kind, namespace and name: the second would fail at
`pulumi up` with AlreadyExists, and the plan's manifest writer would keep only one of them."""

from collections import Counter

import pytest

from stacks import config
from stacks.plan import k8s_objects
from tests.conftest import STACK_FILES


def object_keys(objects: list[tuple[str, dict]]) -> Counter:
    return Counter(
        (o.get("kind"), (o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name"))
        for _, o in objects
    )


def duplicates(objects: list[tuple[str, dict]]) -> list[tuple]:
    return sorted(k for k, n in object_keys(objects).items() if n > 1)


def test_duplicate_check_can_fail():
    """Negative control: the same ServiceAccount twice is reported; one per namespace is not."""
    sa = lambda ns: ("r", {"kind": "ServiceAccount", "metadata": {"namespace": ns, "name": "model-cache"}})  # noqa: E731
    assert duplicates([sa("models"), sa("models")]) == [("ServiceAccount", "models", "model-cache")]
    assert duplicates([sa("models"), sa("other")]) == []


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_no_two_objects_share_kind_namespace_and_name(path, plan_of):
    _, rec, _ = plan_of(path)
    objects = k8s_objects(rec)
    assert len(objects) > 10  # the plan registered Kubernetes objects at all
    assert duplicates(objects) == []


@pytest.mark.parametrize(
    "raw,where",
    [
        ({"models": {"model-cache": {"preset": "qwen3-0.6b"}}}, "models.model-cache"),
        (
            {"models": {"tiny": {"preset": "qwen3-0.6b"}}, "observability": {"enabled": True, "namespace": "gateway"}},
            "observability.namespace",
        ),
    ],
)
def test_the_config_refuses_what_would_collide(raw, where):
    with pytest.raises(config.ConfigError) as e:
        config.resolve(raw, stack="t")
    assert any(p.startswith(f"llm-serving:{where}: ") for p in e.value.problems), e.value.problems
