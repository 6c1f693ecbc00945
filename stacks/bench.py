"""Load test a deployed stack: `python -m stacks.bench STACK [--outputs FILE] [--gateway-url URL]
[--api-key KEY] [--model NAME] [--concurrency 1,2,4,8] [--duration S | --requests N]
[--dataset random|shared-prefix|FILE] [--input-len N] [--output-len N] [--slo-ttft-ms MS --slo-itl-ms MS]
[--json] [--in-cluster [--gateway-namespace NS]]`.

Reads the stack outputs as `stacks.verify` does (gateway URL, master key, models; flags override them) and
runs the load engine, `vllm bench serve` (shipped with vLLM; `--engine PATH`, default `vllm` on PATH), once
per concurrency. For each concurrency it reports req/s, output tok/s, TTFT / ITL / end-to-end p50 p90 p99
and goodput (req/s whose TTFT and mean inter-token time met the SLO); then the knee and the $ per 1M
output tokens at the knee, from the stack's $/h (accelerator nodes of the model alone, and the whole
stack), both at the configured minimum replicas, as `stacks.plan` prices them.

The knee is the largest tested concurrency whose p99 TTFT and p99 ITL are both within the SLO and whose
requests all succeeded. The SLO is `--slo-ttft-ms` / `--slo-itl-ms`, else the model's `slo` in the stack
config. Prices and the tokenizer (the model's Hugging Face id) come from the stack config
(Pulumi.STACK.yaml or --config FILE) when it is here; without it, no $ figures.
--duration is approximate: each level's request count is sized from the previous level's median
end-to-end time (the first from one test chat); every level starts with one warm-up request per stream.
Exit 0 when every level ran, 1 when the engine failed, 2 on bad input (one line, no traceback).

--in-cluster runs the same engine, with the same command lines, as a Job in the model's namespace
(stacks/measure/job.py: the pinned vLLM image, non-root, read-only root, its own ServiceAccount and
NetworkPolicies, the tokenizer read from the model cache), through `kubectl` with the stack's
kubeconfig: apply, wait, read the result from the pod log, delete (also on failure). It needs
--requests (default 20 per stream) rather than --duration; any failure of the Job exits 2 with one line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from components.model_cache import ModelCache
from components.types import GATEWAY_NS, GATEWAY_PORT, MODELS_NS, service_host
from stacks import catalog, measure
from stacks.measure import engine as eng
from stacks.measure import job
from stacks.verify import BadInput, Runner, admin_key, chat, load_outputs, model_targets, need, run_command

ROOT = Path(__file__).resolve().parent.parent
ENGINE_ENV = "STACKS_BENCH_ENGINE"


class EngineFailed(Exception):
    """Exit 1: the load engine ran but did not produce a result."""


@dataclass(frozen=True)
class StackFacts:
    """What the stack config says about the benchmarked model (all None without a stack file)."""

    key: str | None = None  # the model's key under `models:`
    hf_id: str | None = None
    slo: measure.Slo | None = None
    accelerator_usd_h: float | None = None
    stack_usd_h: float | None = None
    source: str = "no stack config"


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return v

    return parse


def _concurrency(text: str) -> list[int]:
    try:
        return measure.parse_concurrency(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line on stderr and exit 2, instead of usage + message
        self.exit(2, f"error: {message} — see `{self.prog} --help`\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="python -m stacks.bench",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("stack")
    ap.add_argument("--outputs", help="JSON of `pulumi stack output --json --show-secrets` (default: ask pulumi)")
    ap.add_argument("--config", type=Path, help="the stack config (default: Pulumi.STACK.yaml, if present)")
    ap.add_argument("--gateway-url", help="reach the gateway here instead of the gatewayUrl output (port-forward)")
    ap.add_argument("--api-key", help="gateway key instead of the admin key the gatewayAdminKey output locates")
    ap.add_argument("--model", help="the gateway's model name (default: the stack's only model)")
    ap.add_argument("--concurrency", type=_concurrency, default=[1, 2, 4, 8], help="levels, e.g. 1,2,4,8")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--duration", type=_positive(float), help="about this many seconds per level (default 30)")
    size.add_argument("--requests", type=_positive(int), help="requests per level (at least the concurrency)")
    ap.add_argument("--dataset", default="random", help="random, shared-prefix, or a JSONL file of {prompt}")
    ap.add_argument("--input-len", type=_positive(int), default=512, help="prompt tokens (default 512)")
    ap.add_argument("--output-len", type=_positive(int), default=128, help="output tokens (default 128)")
    ap.add_argument("--slo-ttft-ms", type=_positive(float), help="SLO: p99 time to first token, ms")
    ap.add_argument("--slo-itl-ms", type=_positive(float), help="SLO: p99 inter-token latency, ms")
    ap.add_argument("--tokenizer", help="tokenizer for the engine (default: the model's hfId in the stack config)")
    ap.add_argument("--engine", default=os.environ.get(ENGINE_ENV, "vllm"), help=f"the vllm CLI (${ENGINE_ENV})")
    ap.add_argument("--results-dir", type=Path, help="keep the engine's JSON result per level here")
    ap.add_argument("--timeout", type=_positive(float), default=1800, help="seconds per level (default 1800)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--in-cluster", action="store_true", help="run the engine as a Job in the cluster (kubectl)")
    ap.add_argument("--gateway-namespace", help="--in-cluster: LiteLLM's namespace (default: beside the model's)")
    return ap


# --- inputs -------------------------------------------------------------------------------------


def check_flags(a: argparse.Namespace) -> None:
    if shutil.which(a.engine) is None:
        raise BadInput(f"{a.engine}: not found — install vLLM (it has `vllm bench serve`) or pass --engine PATH")
    if a.dataset not in eng.DATASETS and not Path(a.dataset).is_file():
        raise BadInput(f"--dataset {a.dataset}: not random, shared-prefix or a file — pass one of those")
    if a.requests is not None and a.requests < a.concurrency[-1]:
        raise BadInput(
            f"--requests {a.requests}: fewer than the highest concurrency {a.concurrency[-1]} — "
            f"pass at least one request per stream"
        )
    if (a.slo_ttft_ms is None) != (a.slo_itl_ms is None):
        raise BadInput("--slo-ttft-ms and --slo-itl-ms go together — pass both")
    if a.results_dir is not None and a.results_dir.exists() and not a.results_dir.is_dir():
        raise BadInput(f"--results-dir {a.results_dir}: is a file — pass a directory")


def gateway(a: argparse.Namespace) -> tuple[str, str, list[str]]:
    """(url, key, models the outputs list); outputs are read only when a flag does not give the value."""
    outputs: dict = {}
    if a.outputs or not (a.gateway_url and a.api_key and a.model):
        outputs = load_outputs(a.stack, a.outputs, run_command)
    url = a.gateway_url or need(outputs, "gatewayUrl", "the stack exports it from the LiteLLM gateway")
    key = a.api_key or admin_key(outputs, run_command)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BadInput(f"gateway URL {url!r}: not an http(s) URL — pass --gateway-url http://HOST:PORT")
    return url.rstrip("/"), key, list(outputs.get("models") or [])


def served_models(url: str, key: str, timeout: float = 30) -> list[str]:
    """The gateway's model names (GET /v1/models); bad input when unreachable or the key is refused."""
    req = urllib.request.Request(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            doc = json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code in (400, 401, 403):  # LiteLLM without a database answers an unknown key with 400
            raise BadInput(f"{url}: the gateway refused the key (HTTP {e.code}) — pass the right --api-key") from None
        raise BadInput(f"{url}/v1/models: HTTP {e.code} — is this the LiteLLM gateway?") from None
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", e)
        raise BadInput(f"{url}: unreachable ({why}) — port-forward the gateway and pass --gateway-url") from None
    except ValueError:
        raise BadInput(f"{url}/v1/models: not JSON — is this the LiteLLM gateway?") from None
    return sorted(str(m.get("id")) for m in doc.get("data") or [] if isinstance(m, dict))


def pick_model(wanted: str | None, listed: list[str], served: list[str]) -> str:
    if wanted is None:
        if len(listed) != 1:
            raise BadInput(f"the stack serves {', '.join(listed) or 'no models'} — pass --model NAME")
        wanted = listed[0]
    if wanted not in served:
        raise BadInput(f"model {wanted!r}: the gateway does not serve it (it serves: {', '.join(served) or 'none'})")
    return wanted


def stack_facts(stack: str, config: Path | None, model: str) -> StackFacts:
    """Tokenizer, SLO and $/h from the stack config, planned offline as `stacks.plan` does."""
    path = config or ROOT / f"Pulumi.{stack}.yaml"
    if config is None and not path.exists():
        return StackFacts()
    if not path.is_file():
        raise BadInput(f"--config {path}: no such file — pass the stack's Pulumi.<stack>.yaml")
    from stacks import plan
    from stacks.capacity import costs
    from stacks.config import ConfigError

    try:
        intent, rec = plan.run_program(stack, path)
    except ConfigError as e:
        raise BadInput(f"{path}: " + "; ".join(e.problems)) from None
    m = next((m for m in intent.models.values() if model in (m.served_name, m.name)), None)
    if m is None:
        raise BadInput(f"model {model!r}: not in {path} — pass the config of the stack that serves it")
    slo = intent.config.models[m.name].slo or intent.config.slo
    resources = [r for r in rec.resources if r.type != "pulumi:pulumi:Stack"]
    whole = costs.stack_cost(resources, {n: x.replicas_max for n, x in intent.models.items()})
    return StackFacts(
        key=m.name,
        hf_id=m.hf_id,
        slo=measure.Slo(slo.ttftMs, slo.itlMs) if slo is not None else None,
        accelerator_usd_h=m.hourly_usd[0],
        stack_usd_h=whole.min_usd,
        source=str(path),
    )


def slo_of(a: argparse.Namespace, facts: StackFacts, model: str) -> tuple[measure.Slo, str]:
    if a.slo_ttft_ms is not None:
        return measure.Slo(a.slo_ttft_ms, a.slo_itl_ms), "flags"
    if facts.slo is not None:
        return facts.slo, f"{facts.source} (models.{facts.key}.slo)"
    raise BadInput(
        f"model {model!r}: no SLO — pass --slo-ttft-ms and --slo-itl-ms, or set slo: {{ttftMs, itlMs}} "
        f"on the model in the stack config"
    )


# --- running the engine ---------------------------------------------------------------------------


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_level(run: eng.Run, key: str, concurrency: int, requests: int, out: Path, timeout: float) -> measure.Level:
    name = f"c{concurrency}.json"
    cmd = eng.argv(run, concurrency, requests, out, name)
    env = {**os.environ, "OPENAI_API_KEY": key}
    log = out / f"c{concurrency}.log"
    try:
        with open(log, "w") as fh:
            rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    except FileNotFoundError:
        raise BadInput(f"{run.engine}: not found — install vLLM (it has `vllm bench serve`) or pass --engine") from None
    except subprocess.TimeoutExpired:
        raise EngineFailed(f"concurrency {concurrency}: the engine ran over {timeout:.0f}s (log: {log})") from None
    if rc.returncode != 0 or not (out / name).is_file():
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else f"exit code {rc.returncode}"
        raise EngineFailed(f"concurrency {concurrency}: the engine failed: {last[:300]} (log: {log})")
    try:
        return eng.level(json.loads((out / name).read_text()), concurrency)
    except (KeyError, ValueError, TypeError) as e:
        raise EngineFailed(f"concurrency {concurrency}: unexpected engine result ({e!r}) in {out / name}") from None


def seconds_per_request(url: str, key: str, model: str, output_len: int) -> float:
    """One streamed chat: proves the route works and sizes --duration's first level (its decode time
    scaled to --output-len; whole-request wall time, as a gateway may deliver chunks in bursts)."""
    t0 = time.monotonic()
    try:
        r = chat(url, key, model, timeout=120, max_tokens=min(output_len, 16))
    except urllib.error.HTTPError as e:
        body = e.read()[:160].decode("utf-8", "replace")
        raise BadInput(f"model {model!r}: the gateway answered HTTP {e.code}: {body}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise BadInput(f"model {model!r}: a test chat failed ({type(e).__name__}: {e})"[:300]) from None
    decode = max(0.0, time.monotonic() - t0 - r.ttft_s)
    return r.ttft_s + decode * output_len / max(1, r.tokens)


def sweep(a: argparse.Namespace, run: eng.Run, key: str, out: Path) -> list[measure.Level]:
    levels: list[measure.Level] = []
    per_request = 0.0 if a.requests else seconds_per_request(run.base_url, key, run.model, run.output_len)
    for i, c in enumerate(a.concurrency, 1):
        if levels:
            per_request = levels[-1].e2el.p50 / 1000
        n = a.requests or measure.requests_for_duration(a.duration or 30, c, per_request)
        progress(f"bench {run.model}: concurrency {c} ({i}/{len(a.concurrency)}), {n} requests ...")
        lv = run_level(run, key, c, n, out, a.timeout)
        ok = "meets SLO" if measure.meets_slo(lv, run.slo) else "misses SLO"
        progress(
            f"bench {run.model}: concurrency {c}: {lv.request_rate:.2f} req/s, {lv.output_rate:.1f} tok/s, "
            f"p99 TTFT {lv.ttft.p99:.0f} ms, p99 ITL {lv.itl.p99:.1f} ms, {lv.failed} failed — {ok}"
        )
        if short := measure.token_shortfall(lv, run.output_len):
            progress(f"warning: {short}")
        levels.append(lv)
    return levels


# --- report ---------------------------------------------------------------------------------------


def report(run: eng.Run, slo_source: str, facts: StackFacts, levels: list[measure.Level]) -> dict:
    s = run.slo
    k = measure.knee(levels, s)
    hourly = {"acceleratorNodes": facts.accelerator_usd_h, "wholeStack": facts.stack_usd_h, "source": facts.source}
    knee_doc = None
    if k is not None:
        per_m = {
            name: None if usd is None else measure.usd_per_million_tokens(usd, k.output_rate)
            for name, usd in (("acceleratorNodes", facts.accelerator_usd_h), ("wholeStack", facts.stack_usd_h))
        }
        knee_doc = {
            "concurrency": k.concurrency,
            "outputTokensPerSecond": k.output_rate,
            "usdPerMillionOutputTokens": per_m,
        }
    return {
        "model": run.model,
        "load": {"dataset": run.dataset, "inputLen": run.input_len, "outputLen": run.output_len},
        "slo": {"ttftMs": s.ttft_ms, "itlMs": s.itl_ms, "source": slo_source},
        "kneeRule": measure.KNEE_RULE,
        "hourlyUsd": hourly,
        "levels": [{**lv.as_dict(), "meetsSlo": measure.meets_slo(lv, s)} for lv in levels],
        "knee": knee_doc,
        "warnings": [w for lv in levels if (w := measure.token_shortfall(lv, run.output_len))],
    }


def _ms(d: dict) -> str:
    return f"{d['p50']:.0f}/{d['p90']:.0f}/{d['p99']:.0f}"


def table(doc: dict) -> str:
    head = ["conc", "req/s", "out tok/s", "TTFT ms p50/90/99", "ITL ms p50/90/99", "e2e ms p50/90/99"]
    head += ["goodput", "failed", "SLO"]
    rows = [head]
    for lv in doc["levels"]:
        good = lv["goodputRequestsPerSecond"]
        rows.append(
            [
                str(lv["concurrency"]),
                f"{lv['requestsPerSecond']:.2f}",
                f"{lv['outputTokensPerSecond']:.1f}",
                _ms(lv["ttftMs"]),
                _ms(lv["itlMs"]),
                _ms(lv["e2eMs"]),
                "-" if good is None else f"{good:.2f}",
                str(lv["failed"]),
                "ok" if lv["meetsSlo"] else "miss",
            ]
        )
    w = [max(len(r[i]) for r in rows) for i in range(len(head))]
    s = doc["slo"]
    lines = [f"model {doc['model']}; SLO p99 TTFT <= {s['ttftMs']:g} ms, p99 ITL <= {s['itlMs']:g} ms ({s['source']})"]
    lines += ["  ".join(c.ljust(x) for c, x in zip(r, w, strict=True)).rstrip() for r in rows]
    return "\n".join(lines + knee_lines(doc) + [f"warning: {w}" for w in doc["warnings"]]) + "\n"


def knee_lines(doc: dict) -> list[str]:
    k = doc["knee"]
    if k is None:
        return [f"knee: none — no tested concurrency meets the SLO ({doc['kneeRule']})"]
    out = [f"knee: concurrency {k['concurrency']} ({k['outputTokensPerSecond']:.1f} output tok/s)"]
    h, per_m = doc["hourlyUsd"], k["usdPerMillionOutputTokens"]
    for name, label in (("acceleratorNodes", "accelerator nodes of the model"), ("wholeStack", "whole stack")):
        if per_m[name] is None:
            out.append(f"$ per 1M output tokens at the knee, {label}: n/a ({h['source']})")
        else:
            out.append(f"$ per 1M output tokens at the knee, {label}: ${per_m[name]:.2f} (at ${h[name]:.2f}/h)")
    return out


def bench(a: argparse.Namespace) -> dict:
    check_flags(a)
    url, key, listed = gateway(a)
    model = pick_model(a.model, listed, served_models(url, key))
    facts = stack_facts(a.stack, a.config, model)
    slo = slo_of(a, facts, model)
    run = eng.Run(
        engine=a.engine,
        base_url=url,
        model=model,
        tokenizer=a.tokenizer or facts.hf_id or model,
        dataset=a.dataset,
        input_len=a.input_len,
        output_len=a.output_len,
        slo=slo[0],
    )
    with tempfile.TemporaryDirectory(prefix="stacks-bench-") as tmp:
        out = a.results_dir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        levels = sweep(a, run, key, out)
    return {"stack": a.stack, "gatewayUrl": url, **report(run, slo[1], facts, levels)}


# --- in-cluster: the engine as a Job (stacks/measure/job.py) ---------------------------------------

REQUESTS_PER_STREAM = 20  # --in-cluster without --requests: this many per stream at every level


def in_cluster_checks(a: argparse.Namespace) -> None:
    if a.duration is not None:
        raise BadInput("--duration: the Job cannot time a first request from here — pass --requests N")
    if a.dataset not in eng.DATASETS:
        raise BadInput(f"--dataset {a.dataset}: the Job has no local files — pass random or shared-prefix")
    check_flags(argparse.Namespace(**{**vars(a), "engine": sys.executable, "dataset": "random"}))


def namespaces_of(a: argparse.Namespace, outputs: dict, model: str) -> tuple[str, str]:
    """(models, gateway) namespaces: the model's from its endpoint; LiteLLM's beside it, as
    platform (`models`/`gateway`) and team (`T-models`/`T-gateway`) stacks name them."""
    endpoints = need(outputs, "modelEndpoints", "the stack exports every model's in-cluster URL")
    if model not in endpoints:
        raise BadInput(f"model {model!r}: not in the stack output modelEndpoints — pass one of {', '.join(endpoints)}")
    models_ns = model_targets({model: endpoints[model]})[model][0]
    if a.gateway_namespace:
        return models_ns, a.gateway_namespace
    if models_ns == MODELS_NS:
        return models_ns, GATEWAY_NS
    if models_ns.endswith(f"-{MODELS_NS}"):
        return models_ns, models_ns.removesuffix(MODELS_NS) + GATEWAY_NS
    raise BadInput(f"namespace {models_ns}: cannot tell the gateway's namespace from it — pass --gateway-namespace")


def bench_in_cluster(a: argparse.Namespace, run_cmd: Runner = run_command) -> dict:
    in_cluster_checks(a)
    outputs = load_outputs(a.stack, a.outputs, run_cmd)
    key = a.api_key or need(outputs, "gatewayMasterKey", "redeploy with this version or pass --api-key")
    model = pick_model(a.model, list(outputs.get("models") or []), list(outputs.get("models") or []))
    models_ns, gateway_ns = namespaces_of(a, outputs, model)
    facts = stack_facts(a.stack, a.config, model)
    slo = slo_of(a, facts, model)
    tokenizer = a.tokenizer or facts.hf_id
    if tokenizer is None:
        raise BadInput(
            f"model {model!r}: no tokenizer — pass --tokenizer HF_ID (read from the model cache) or --config"
        )
    url = f"http://{service_host(job.GATEWAY_SERVICE, gateway_ns)}:{GATEWAY_PORT}"
    run = eng.Run("vllm", url, model, tokenizer, a.dataset, a.input_len, a.output_len, slo[0])
    spec = job.JobSpec(
        models_ns=models_ns,
        gateway_ns=gateway_ns,
        image=catalog.versions().images["vllm"],
        cache_claim=ModelCache.claim_name,
        run=run,
        levels=tuple((c, a.requests or REQUESTS_PER_STREAM * c) for c in a.concurrency),
        level_timeout_s=a.timeout,
    )
    kubeconfig = need(outputs, "kubeconfig", "a platform or team stack exports it")
    fd, path = tempfile.mkstemp(prefix="bench-kubeconfig-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp: mode 0600
            f.write(kubeconfig if isinstance(kubeconfig, str) else json.dumps(kubeconfig))
        progress(f"bench {model}: Job {models_ns}/{job.NAME}, {len(spec.levels)} levels, against {url} ...")
        results = job.run_job(job.Cluster(run_cmd, path, progress=progress), spec, key)
    except job.JobFailed as e:
        raise BadInput(f"in-cluster bench: {e}") from None
    finally:
        os.unlink(path)
    try:
        levels = [eng.level(doc, c) for c, doc in results]
    except (KeyError, ValueError, TypeError) as e:
        raise BadInput(f"in-cluster bench: unexpected engine result ({e!r})") from None
    if dead := next((lv for lv in levels if lv.completed == 0), None):
        # the engine reports a refused key as requests that all failed; the local run asks /v1/models first
        raise BadInput(
            f"in-cluster bench: concurrency {dead.concurrency}: all {dead.failed} requests failed — check the key "
            f"(--api-key) and that the gateway serves {model!r}"
        )
    return {"stack": a.stack, "gatewayUrl": url, **report(run, slo[1], facts, levels)}


def main(argv: list[str] | None = None, run: Runner = run_command) -> int:
    a = parser().parse_args(argv)
    try:
        doc = bench_in_cluster(a, run) if a.in_cluster else bench(a)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except EngineFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if a.json else table(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
