"""Cross-checks of a model's `weights` and `compileCache` against the rest of its resolved config."""

from __future__ import annotations

from stacks.config.schema import REVISION_SHA, ModelConfig

# vLLM flags the stack sets itself when weights come from S3: the same flag in extraArgs would fight it.
OWNED_FLAGS = ("--load-format", "--model-loader-extra-config")


def problems(m: ModelConfig, revision: str | None, kind: str, team_stack: bool) -> list[tuple[tuple, str, str]]:
    """(key path below the model, what is wrong, how to fix it) for each problem."""
    out: list[tuple[tuple, str, str]] = []
    if m.compileCache and kind == "neuron":
        out.append(
            (
                ("compileCache",),
                "Neuron servers already keep their compiled artifacts on EFS, keyed by image and arguments",
                "remove compileCache: from this model",
            )
        )
    if m.weights is None:
        return out
    if not (revision and REVISION_SHA.fullmatch(revision)):
        out.append(
            (
                ("revision",),
                "weights from S3 are copied once per revision, so a branch or tag would never be refreshed",
                "set revision: to the 40-hex commit sha to serve",
            )
        )
    if kind == "neuron":
        out.append(
            (
                ("weights",),
                "the Run:ai Model Streamer is not part of the Neuron image's vLLM",
                "remove weights: (Neuron models read the shared EFS cache)",
            )
        )
    if team_stack:
        out.append(
            (
                ("weights",),
                "a team stack creates no AWS resources, and S3 weights need a bucket and its access roles",
                "remove weights: from the team stack, or serve the model from the platform stack",
            )
        )
    owned = [a for a in m.extraArgs if a.split("=", 1)[0] in OWNED_FLAGS]
    if owned:
        out.append(
            (
                ("extraArgs",),
                f"{', '.join(owned)} is set by the stack when weights come from S3",
                "remove it from extraArgs",
            )
        )
    return out
