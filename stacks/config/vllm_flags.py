"""The policy for a model's `extraArgs`: the escape hatch to `vllm serve`, checked the way vLLM reads it.

vLLM's `FlexibleArgumentParser` (vllm/utils/argparse_utils.py, 0.32) accepts more spellings than the
flag names: `--a_b` for `--a-b` (only the part before the first `.` is rewritten), `--flag=value`,
`--flag.key value` / `--flag.key=value` (merged into `--flag '{"key": value}'`), `--flag.key+ a,b`,
`-O3` / `-O=3` / `-O 3` for `--optimization-level`, short aliases (`-tp`, `-q`, `-pp`, `-dp`, `-sc`, …),
`-qfp8` (a one-letter alias with its value attached) and, since argparse's `allow_abbrev` is on,
any unambiguous prefix of a long flag (`--trust-remote` is `--trust-remote-code`). A deny-list that
compares raw strings is bypassed by each of these, so every element is resolved to the flag vLLM
would see, against the option table of the release in the image (`catalog/vllm-serve-flags.json`,
dumped from the real parser; the e2e tier re-dumps and compares), and only then judged.

Refused: elements with whitespace, control or non-ASCII characters; more than MAX_ARGS elements or
one longer than MAX_ARG_LEN; unknown, abbreviated or ambiguous flags; stray values; flags that
need a value without one; removed flags; flags the program renders itself; flags that run or load
code, read files or open endpoints the platform does not model (DANGEROUS); and, past all of those,
any flag not on the allow-list (`catalog/vllm-extra-args.yaml`, each entry with why it is safe, some
with the only values accepted): a flag vLLM adds in a release is refused until someone judges it.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["nvidia", "neuron"]
TABLE_FILE = Path(__file__).resolve().parent.parent / "catalog" / "vllm-serve-flags.json"
ALLOW_FILE = TABLE_FILE.parent / "vllm-extra-args.yaml"

MAX_ARGS = 32
MAX_ARG_LEN = 512
_SAFE_CHARS = re.compile(r"\A[\x21-\x7e]+\Z")  # printable ASCII, no spaces
_NUMBER = re.compile(r"\A(-\d+|-\d*\.\d+)\Z")  # argparse treats these as values, not options

# Flags vLLM 0.32 removed (argparse exits 2) and the one that silently removes all metrics.
FORBIDDEN = {
    "--disable-log-requests": "removed; request logging is off by default (use --enable-log-requests to turn it on)",
    "--swap-space": "removed in the V1 engine",
    "--device": "removed; the platform is detected",
    "--task": "removed; use --runner / --convert",
    "--guided-decoding-backend": "removed; use --structured-outputs-config",
    "--enable-reasoning": "removed; --reasoning-parser alone enables it",
    "--num-scheduler-steps": "removed in the V1 engine",
    "--disable-log-stats": "removes every vllm:* Prometheus metric the platform scales and alerts on",
}

# Flags the program renders itself, or whose effect the planner, the pod spec, the probes or the
# gateway depend on: setting them through extraArgs would silently contradict what was sized.
MANAGED = {
    "--model": "the model is the positional argument, from preset/hfId",
    "--served-model-name": "servedName",
    "--tensor-parallel-size": "tensorParallel",
    "--max-model-len": "maxModelLen",
    "--max-num-seqs": "maxNumSeqs",
    "--max-num-batched-tokens": "maxNumBatchedTokens",
    "--gpu-memory-utilization": "gpuMemoryUtilization",
    "--kv-cache-memory-bytes": "gpuMemoryUtilization (the planner sizes the KV cache from it)",
    "--num-gpu-blocks-override": "the planner (Neuron KV blocks)",
    "--block-size": "the planner",
    "--dtype": "the catalog's checkpoint dtype",
    "--quantization": "quantization",
    "--kv-cache-dtype": "kvCacheDtype",
    "--revision": "revision",
    "--tool-call-parser": "tools",
    "--enable-auto-tool-choice": "tools",
    "--reasoning-parser": "reasoning",
    "--trust-remote-code": "trustRemoteCode",
    "--shutdown-timeout": "requestTimeoutSeconds (the pod's terminationGracePeriodSeconds is derived from it)",
    "--api-key": "the platform's API key Secret",
    "--port": "the Service port",
    "--host": "the Service",
    "--uds": "the Service port",
    "--root-path": "the probe paths",
    "--grpc": "the HTTP Service",
    "--grpc-port": "the HTTP Service",
    "--download-dir": "the shared model cache (HF_HUB_CACHE)",
    "--ssl-keyfile": "the in-cluster HTTP Service",
    "--ssl-certfile": "the in-cluster HTTP Service",
    "--ssl-ca-certs": "the in-cluster HTTP Service",
    "--ssl-cert-reqs": "the in-cluster HTTP Service",
    "--ssl-ciphers": "the in-cluster HTTP Service",
    "--enable-ssl-refresh": "the in-cluster HTTP Service",
    # The pod requests tensorParallel devices on one node: layouts that need more devices or nodes.
    "--pipeline-parallel-size": "tensorParallel (one node, TP devices)",
    "--data-parallel-size": "replicas",
    "--data-parallel-size-local": "replicas",
    "--data-parallel-rank": "replicas",
    "--data-parallel-start-rank": "replicas",
    "--data-parallel-address": "replicas",
    "--data-parallel-rpc-port": "replicas",
    "--data-parallel-backend": "replicas",
    "--data-parallel-hybrid-lb": "replicas",
    "--data-parallel-external-lb": "replicas",
    "--data-parallel-multi-port-external-lb": "replicas",
    "--decode-context-parallel-size": "tensorParallel",
    "--prefill-context-parallel-size": "tensorParallel",
    "--nnodes": "replicas (one node per replica)",
    "--node-rank": "replicas (one node per replica)",
    "--headless": "replicas (one node per replica)",
    "--master-addr": "replicas (one node per replica)",
    "--master-port": "replicas (one node per replica)",
}

# Flags that run or import code named in the config, read files of the container, deserialize
# client-sent tensors or templates, leak a token into the pod spec, or open connections and
# endpoints the NetworkPolicies and the gateway do not model. No escape hatch reaches them.
DANGEROUS = {
    "--trust-remote-code": "runs the checkpoint's Python from the Hub inside the server",
    "--hf-overrides": "rewrites the model config (auto_map can load remote code; the planner sized the original)",
    "--allowed-local-media-path": "lets every client read files of the container",
    "--middleware": "imports and runs the named Python in the API server",
    "--enable-tokenizer-info-endpoint": "exposes the tokenizer and chat template on an extra endpoint",
    "--tool-server": "makes the server call tool servers on clients' behalf",
    "--config": "reads more arguments from a file, past these checks",
    "--enable-prompt-embeds": "deserializes client-sent tensors (memory-corruption advisories)",
    "--enable-mm-embeds": "deserializes client-sent tensors",
    "--trust-request-chat-template": "renders client-sent Jinja templates in the server",
    "--trust-request-mm-kwargs": "passes client-sent kwargs to the processor",
    "--worker-cls": "imports the named Python class",
    "--worker-extension-cls": "imports the named Python class",
    "--scheduler-cls": "imports the named Python class",
    "--logits-processors": "imports the named Python classes",
    "--io-processor-plugin": "loads the named plugin",
    "--model-class-overrides": "imports the named Python classes",
    "--tool-parser-plugin": "executes the named Python file",
    "--reasoning-parser-plugin": "executes the named Python file",
    "--logging-config": "a logging dictConfig can instantiate any class",
    "--log-config-file": "a logging dictConfig can instantiate any class",
    "--hf-token": "puts a token in the pod spec; the HF token reaches only the cache Job",
    "--kv-transfer-config": "opens KV-transfer connections the NetworkPolicies do not allow",
    "--kv-events-config": "publishes KV events on a socket the NetworkPolicies do not model",
    "--ec-transfer-config": "opens transfer connections the NetworkPolicies do not allow",
    "--weight-transfer-config": "opens weight-transfer connections the NetworkPolicies do not allow",
    "--profiler-config": "turns on the profiler endpoints",
    "--help": "prints help and exits; the server would never start",
    "--otlp-traces-endpoint": "sends traces to a collector the NetworkPolicies do not allow",
    "--collect-detailed-traces": "traces go to an OTLP collector the NetworkPolicies do not allow",
    "--distributed-executor-backend": "ray or external executors open connections the NetworkPolicies do not allow",
}


@dataclass(frozen=True)
class Used:
    """One flag as vLLM would see it: its canonical long name and the spelling given."""

    flag: str
    given: str
    negated: bool
    value: str | None  # the (first) value given
    key: str = ""  # the dotted part of `--flag.key value`, if any


@functools.cache
def table(kind: Kind) -> dict[str, dict]:
    return json.loads(TABLE_FILE.read_text())[kind]["options"]


@functools.cache
def table_version(kind: Kind) -> str:
    return json.loads(TABLE_FILE.read_text())[kind]["vllm"]


def _normalise_long(arg: str) -> tuple[str, str | None, bool]:
    """(option name, attached value, dotted) the way FlexibleArgumentParser rewrites a `--` element."""
    name, eq, value = arg.partition("=")
    head, dot, _rest = name[2:].partition(".")
    name = "--" + head.replace("_", "-")
    return name, (value if eq else None), bool(dot)


def _lookup(name: str, options: dict[str, dict]) -> tuple[dict | None, str | None]:
    """(entry, problem): exact match, else argparse's prefix matching reported as a problem."""
    if name in options:
        return options[name], None
    if name.startswith("--"):
        matches = sorted({options[o]["flag"] for o in options if o.startswith(name) and o.startswith("--")})
    else:
        matches = sorted({options[o]["flag"] for o in options if o.startswith(name) and not o.startswith("--")})
    if len(matches) == 1:
        return None, f"abbreviation of {matches[0]} (vLLM expands it)"
    if matches:
        return None, f"ambiguous: vLLM would refuse it (matches {', '.join(matches[:4])})"
    return None, "unknown flag"


def _screen(args: list[str]) -> list[tuple[str, str]]:
    """Count, length and characters, before any element is read as a flag."""
    if len(args) > MAX_ARGS:
        return [(f"{len(args)} elements (at most {MAX_ARGS})", "keep extraArgs short; most settings have a field")]
    problems = []
    for a in args:
        if len(a) > MAX_ARG_LEN:
            problems.append((f"element of {len(a)} characters (at most {MAX_ARG_LEN})", "shorten it"))
        elif not _SAFE_CHARS.fullmatch(a):
            problems.append(
                (
                    f"{a[:40]!r} contains whitespace, control or non-ASCII characters",
                    "one flag or value per element; write JSON values without spaces",
                )
            )
    return problems


def _spelling(a: str, options: dict[str, dict]) -> tuple[str, str | None, bool]:
    """(option name, attached value, dotted) for one flag element, the way vLLM rewrites it."""
    if a.startswith("--"):
        name, value, dotted = _normalise_long(a)
        if name == "--help":  # vLLM turns --help=<keyword> into --help (help search)
            value = None
        return name, value, dotted
    if a.startswith("-O"):
        return "--optimization-level", (a[3:] if a[2:3] == "=" else a[2:]) or None, False
    name, eq, v = a.partition("=")
    value = v if eq else None
    if name not in options and name[:2] in options and len(name) > 2:  # -qfp8: one-letter alias + value
        name, value = name[:2], name[2:]
    return name, value, False


class _Reader:
    """Walks extraArgs once, as argparse would: flags, the values they take, and what it would refuse."""

    def __init__(self, args: list[str], kind: Kind):
        self.args, self.options, self.version = args, table(kind), table_version(kind)
        self.used: list[Used] = []
        self.problems: list[tuple[str, str]] = []
        self.pending: tuple[str, object] | None = None  # (flag, nargs) still able to take values

    def run(self) -> tuple[list[Used], list[tuple[str, str]]]:
        for i, a in enumerate(self.args):
            if a.startswith("-") and len(a) > 1 and not _NUMBER.fullmatch(a):
                self._flag(i, a)
            else:
                self._value(a)
        self._close()
        return self.used, self.problems

    def _close(self) -> None:
        """A flag that needs a value and got none."""
        p = self.pending
        if p is not None and p[1] in (1, "+") and not _took_value(self.used):
            self.problems.append((f"{p[0]} needs a value", f"give it as {p[0]}=<value>"))
        self.pending = None

    def _value(self, a: str) -> None:
        if self.pending is None:
            self.problems.append(
                (
                    f"{a!r} is not the value of any flag (vLLM would refuse a second positional)",
                    "put the flag it belongs to right before it, or remove it",
                )
            )
            return
        flag, nargs = self.pending
        last = self.used[-1] if self.used else None
        if last is not None and last.flag == flag and last.value is None:
            self.used[-1] = Used(last.flag, last.given, last.negated, a, last.key)
        if nargs in (1, "?"):
            self.pending = None

    def _refused_spelling(self, i: int, a: str) -> tuple[str, str] | None:
        if a == "-O" and (i + 1 >= len(self.args) or self.args[i + 1] not in ("0", "1", "2", "3")):
            return ("-O: unknown flag (vLLM reads -O only before 0-3)", "write --optimization-level=<level>")
        if a == "--":
            return ("'--' ends vLLM's options", "remove it")
        return None

    def _flag(self, i: int, a: str) -> None:
        self._close()
        refused = self._refused_spelling(i, a)
        if refused:
            self.problems.append(refused)
            return
        name, value, dotted = _spelling(a, self.options)
        if name in FORBIDDEN:
            shown = name if a.partition("=")[0] == name else f"{a} (= {name})"
            self.problems.append((f"{shown}: {FORBIDDEN[name]}", f"remove {name}"))
            return
        entry, why = _lookup(name, self.options)
        if entry is None:
            what = f"{a}: {why} in vLLM {self.version}" if why == "unknown flag" else f"{a}: {why}"
            abbreviated = why is not None and why.startswith("abbreviation")
            fix = "write the full flag name" if abbreviated else "check `vllm serve --help` of that release; remove it"
            self.problems.append((what, fix))
            return
        self._use(a, name, value, dotted, entry)

    def _use(self, a: str, name: str, value: str | None, dotted: bool, entry: dict) -> None:
        flag, nargs = entry["flag"], entry["nargs"]
        negated = name.startswith("--no-") and not flag.startswith("--no-")
        key = a.partition("=")[0].partition(".")[2] if dotted else ""
        self.used.append(Used(flag, a, negated, value, key))
        if dotted:
            self.pending = None if value is not None else (flag, 1)  # --flag.key value
        elif value is not None:
            if nargs == 0:
                self.problems.append((f"{a}: {flag} takes no value", f"write {name} alone"))
        elif nargs != 0:
            self.pending = (flag, nargs)


def parse(args: list[str], kind: Kind) -> tuple[list[Used], list[tuple[str, str]]]:
    """Resolve extraArgs to flags. Returns (flags used, problems as (what, fix))."""
    problems = _screen(args)
    if problems:
        return [], problems
    return _Reader(args, kind).run()


# Flags that make the server read files or other checkpoints than the model's own: the pod runs
# offline (HF_HUB_OFFLINE=1) with only the model's snapshot in the cache, so they fail at start or
# read the container's filesystem.
OTHER_FILES = {
    "--tokenizer",
    "--spec-model",
    "--hf-config-path",
    "--lora-modules",
    "--default-mm-loras",
    "--chat-template",
    "--mm-encoder-fp8-scale-path",
    "--mm-encoder-fp8-scale-save-path",
    "--tokenizer-revision",
    "--code-revision",
}
# Values refused for flags that are otherwise fine.
BAD_VALUES = {
    "--uvicorn-log-level": ({"trace"}, "logs request headers, API keys included"),
    "--load-format": ({"dummy"}, "serves random weights instead of the checkpoint"),
}
# A value (or a JSON string inside one) that is an absolute, home or parent-relative path.
_PATH_VALUE = re.compile(r'(\A|[=\[{,"])\s*(/|~|\.\./)|(\A|/)\.\.(/|\Z|")')


def _value_problem(u: Used) -> tuple[str, str] | None:
    if u.flag in OTHER_FILES and not u.negated:
        return (
            f"{u.given} reads files other than the model's snapshot; the pod runs offline with only that",
            f"remove {u.flag} (the cache Job downloads the model's own tokenizer and config)",
        )
    if u.flag == "--generation-config" and u.value not in (None, "auto", "vllm"):
        return (f"{u.given}: a generation-config folder is not in the pod", "use --generation-config auto or vllm")
    if u.flag == "--speculative-config" and (
        u.key.split(".")[0] in ("model", "draft_tensor_parallel_size") or '"model"' in (u.value or "")
    ):
        return (
            f"{u.given}: a draft model is not in the pod (the cache Job downloads only the served model)",
            'use a model-free method such as {"method":"ngram",...}, or remove it',
        )
    rule = BAD_VALUES.get(u.flag)
    if rule and (u.value or "").lower() in rule[0]:
        return (
            f"{u.given} {u.value if '=' not in u.given else ''}".strip() + f": {rule[1]}",
            f"use another value for {u.flag}",
        )
    if u.value is not None and _PATH_VALUE.search(u.value):
        return (f"{u.given}: {u.value!r} is a path; the pod has no files of yours", "remove the path")
    return None


@functools.cache
def allowed() -> dict[str, dict]:
    """The extraArgs allow-list (catalog/vllm-extra-args.yaml): flag -> {why, values?}."""
    from stacks.yamlio import load_yaml

    return load_yaml(ALLOW_FILE.read_text())["allowed"]


def _allow_problem(u: Used) -> tuple[str, str] | None:
    entry = allowed().get(u.flag)
    if entry is None:
        return (
            f"{u.given}: {u.flag} is not on the extraArgs allow-list — its effect is outside what the platform "
            "models (endpoints, connections, files, code or sizing)",
            f"remove it; the accepted flags and why each is safe are in {ALLOW_FILE.name}",
        )
    values = entry.get("values")
    if values and u.value is not None and u.value.lower() not in values:
        return (f"{u.given}: {u.flag} accepts {', '.join(values)} here", f"use one of {', '.join(values)}")
    return None


def _took_value(used: list[Used]) -> bool:
    return bool(used) and used[-1].value is not None


def policy_problems(used: list[Used], *, trust_remote_code: bool) -> list[tuple[str, str]]:
    """What the program refuses among flags vLLM would accept."""
    out: list[tuple[str, str]] = []
    for u in used:
        shown = u.given if u.given.split("=", 1)[0] == u.flag else f"{u.given} (= {u.flag})"
        if u.flag == "--trust-remote-code" and not u.negated and not trust_remote_code:
            out.append(
                (
                    f"{shown} {DANGEROUS[u.flag]}",
                    "serve a model vLLM supports natively, or set trustRemoteCode: true on the model "
                    "(with a pinned revision) if it really needs the Hub's code",
                )
            )
        elif u.flag in MANAGED:
            out.append(
                (
                    f"{shown} is rendered by the program from {MANAGED[u.flag]}",
                    f"set that field instead of passing {u.flag}",
                )
            )
        elif u.flag in DANGEROUS:
            if not u.negated:  # --no-<dangerous switch> is the default, harmless
                out.append((f"{shown} {DANGEROUS[u.flag]}", f"remove {u.flag}; the platform does not allow it"))
        elif (p := _value_problem(u) or _allow_problem(u)) is not None:
            out.append(p)
    return out


def chunked_prefill_disabled(used: list[Used]) -> bool:
    state = True
    for u in used:
        if u.flag == "--enable-chunked-prefill":
            state = not u.negated
    return not state


def check(args: list[str], kind: Kind, *, trust_remote_code: bool = False) -> tuple[list[Used], list[tuple[str, str]]]:
    used, problems = parse(args, kind)
    return used, problems + policy_problems(used, trust_remote_code=trust_remote_code)
