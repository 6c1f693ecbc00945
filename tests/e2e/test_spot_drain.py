"""A spot interruption under load, on real vLLM and LiteLLM configured from a spot stack's render
(tests/configs/spot.ok.yaml: two replicas, requestTimeoutSeconds 80, so --shutdown-timeout 80 and a
110 s drain). One replica gets SIGTERM, as kubelet sends it when Karpenter drains the node on the
interruption notice; the other keeps serving. Non-streamed requests must all succeed (the gateway's
rendered retry sends them to the other replica); streams in flight on the drained replica are measured.
A wave of streams (4 requests of 16 choices) goes straight to the drained replica, which runs two
sequences at a time, from a process of its own; SIGTERM follows the wave's first chunk, with the rest of
the wave queued behind it. LiteLLM picks a replica at random, and a CI run once put all six gateway
streams on the other one, so the drain had nothing to drain; on a busy CI machine, two direct streams had
decoded all their tokens before SIGTERM landed, and with 16 sequences at a time a wave of 64 once finished
before a look at the replica's /metrics saw it: the tiny model is that fast, and its API server answers
late while it streams. And a wave can still finish before SIGTERM reaches B's engine (once in a local run,
B busy with the gateway's calls on loaded cores): then B drained nothing, the run proves nothing, and
it runs again on a fresh B, up to ATTEMPTS times.

Measured here (2 cores, 2026-12-07), with a fresh-clone CI run installing beside it: 180 non-streamed calls,
157 of them after SIGTERM, 0 errors; the 6 gateway streams complete; of the 4 direct requests one had
reached the engine (B drained 2 requests and it completed) and 3 were refused with an error; B exited
13.3 s after SIGTERM. With two busy-loop processes and that CI run on both cores: 122 calls (78 after),
0 errors, all 4 direct requests complete, B drained 65 and exited 43.3 s after SIGTERM.

Also the e2e half of stacks.verify's phases: the session server's real log holds the weight-load line.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest

from components.vllm import EXIT_MARGIN_S, PRE_STOP_S
from stacks import verify_phases
from stacks.capacity import spot
from tests.conftest import ROOT
from tests.e2e.servers import MASTER_KEY, VLLM_KEY, gateway_for, render_stack, vllm_server_for

# Starting the servers (the session's vLLM, a second one, LiteLLM) counts against the first test's timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
CLIENTS = ROOT / "tests" / "e2e" / "clients"
PYTHON = ROOT / ".e2e" / "litellm" / "bin" / "python"  # pins the official openai 2.x client
SPOT_STACK = ROOT / "tests" / "configs" / "spot.ok.yaml"
STREAMS, WORKERS, DIRECT, CHOICES = 6, 3, 4, 16
# B runs two sequences at a time (a substitution: the drain does not depend on it), so the direct streams
# queue for seconds: the tiny model decodes a whole stream in a fraction of one.
B_SEQS = 2


def test_weight_load_phase_is_found_in_a_real_vllm_log(vllm_server):
    phases = verify_phases.log_phases(vllm_server.log.read_text(errors="replace"))
    assert "weight load" in phases and phases["weight load"] >= 0
    assert "compile" in phases  # the CPU build's warm-up (it compiles with Inductor there)


@pytest.fixture(scope="module")
def spot_rendered(tmp_path_factory):
    return render_stack(tmp_path_factory.mktemp("spot-plan"), SPOT_STACK)


def test_rendered_drain_fits_the_notice(spot_rendered):
    c = spot_rendered.vllm_container
    dep = next(
        m for m in spot_rendered.manifests if m["kind"] == "Deployment" and m["metadata"]["namespace"] == "models"
    )
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert c["args"][c["args"].index("--shutdown-timeout") + 1] == "80"
    assert grace == PRE_STOP_S + 80 + EXIT_MARGIN_S == spot.DRAIN_LIMIT_S == 110
    router = spot_rendered.litellm_config["router_settings"]
    # one retry, to another deployment: what makes a drained replica invisible to non-streamed calls
    assert router["num_retries"] >= 1 and router["enable_weighted_failover"] is True


def load_process(*argv) -> subprocess.Popen:
    """tests/e2e/clients/spot_load.py in one of its modes."""
    return subprocess.Popen(
        [str(PYTHON), str(CLIENTS / "spot_load.py"), *map(str, argv)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@dataclass
class Attempt:
    doc: dict  # the gateway load's report
    direct: list  # the direct wave's streams
    log: str  # replica B's log from SIGTERM on
    t0: float  # when SIGTERM was sent (monotonic)
    drained_in: float  # seconds from SIGTERM to B's exit
    drained: int  # in-flight requests B's engine drained (0: none in flight)


def sigterm_under_load(spot_rendered, vllm_server, tiny_model, tmp_path) -> Attempt:
    """Replica A is the session's server; replica B runs the spot render's args and gets SIGTERM."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    b = vllm_server_for(spot_rendered, tiny_model, tmp_path / "vllm-b.log", eager=True)
    b.argv[b.argv.index("--max-num-seqs") + 1] = str(B_SEQS)
    b.start()
    # The rendered workers: with one, the gateway's calls (426 against 36 with two, in one local run each)
    # kept B's API server so busy that the wave finished before SIGTERM.
    gw = gateway_for(spot_rendered, vllm_server.port, tmp_path, more_replicas=(b.port,), rendered_workers=True)
    gw.start()
    served = b.args[b.args.index("--served-model-name") + 1]
    try:
        load = load_process("gateway", f"http://127.0.0.1:{gw.port}/v1", MASTER_KEY, "qwen3-0.6b", STREAMS, WORKERS)
        assert load.stdout.readline().strip() == "STREAMING", load.stderr.read()[-3000:]
        wave = load_process("direct", f"http://127.0.0.1:{b.port}/v1", VLLM_KEY, served, DIRECT, CHOICES)
        # 64 sequences, two at a time: when the first has a chunk, the other 62 are queued behind it
        assert wave.stdout.readline().strip() == "FIRST", wave.stderr.read()[-3000:]
        log_start = b.log.stat().st_size
        t0 = time.monotonic()
        os.kill(b.proc.pid, signal.SIGTERM)
        exited: list[float] = []
        threading.Thread(target=lambda: (b.proc.wait(), exited.append(time.monotonic() - t0)), daemon=True).start()
        load.stdin.write("go\n")
        load.stdin.flush()
        out, _ = load.communicate(timeout=300)
        direct = json.loads(wave.communicate(timeout=300)[0].strip().splitlines()[-1])["streams"]
        b.proc.wait(spot.DRAIN_LIMIT_S)
        drained_in = exited[0] if exited else time.monotonic() - t0
    finally:
        gw.stop()
        b.stop()
    log = b.log.read_text(errors="replace")[log_start:]
    m = re.search(r"draining in-flight requests count=(\d+) timeout=(\d+)s", log)
    assert m is None or int(m.group(2)) == 80, log[-3000:]  # the rendered --shutdown-timeout
    doc = json.loads(out.strip().splitlines()[-1])
    return Attempt(doc, direct, log, t0, drained_in, int(m.group(1)) if m else 0)


# A busy machine can let B's engine finish the whole wave before SIGTERM reaches it (seen once in a
# local run, 2026-12-07: "request processing complete" at the signal): such a run proves nothing, and
# runs again on a fresh replica B.
ATTEMPTS = 3


def test_sigterm_one_of_two_replicas_under_load(spot_rendered, vllm_server, tiny_model, tmp_path):
    for attempt in range(1, ATTEMPTS + 1):
        a = sigterm_under_load(spot_rendered, vllm_server, tiny_model, tmp_path / f"attempt-{attempt}")
        if a.drained:
            break
        # Retried for what it could not prove; what it did see still holds: no call through the gateway failed.
        assert [c["error"] for c in a.doc["calls"] if not c["ok"]] == [], f"attempt {attempt}"
        print(f"attempt {attempt}: B's engine held no request when SIGTERM landed; again")
    doc, direct, log, t0, drained_in = a.doc, a.direct, a.log, a.t0, a.drained_in
    calls, streams = doc["calls"], doc["streams"]
    spanned = [s for s in direct if s["end"] > t0 and s["finish"] == "length"]
    # Never reached the engine: still in B's API server when SIGTERM landed. vLLM 0.32 answers those 200
    # and ends the stream with no token, and the official client raises nothing (docs/known-limits.md).
    # Each of a request's 16 choices is a sequence of its own: some can have reached the engine and
    # others not (seen once, 2026-12-07: 982 chunks, every choice that had text ended "length").
    empty = [s for s in direct if not s["chunks"]]
    never = sum(s["never"] for s in direct)
    errors = [c["error"] for c in calls if not c["ok"]]
    finished = [s for s in streams if s["error"] is None and s["finish"] == "length"]
    print(
        f"\nspot drain: {len(calls)} non-streamed calls ({doc['callsAfterKill']} after SIGTERM), "
        f"{len(errors)} errors; streams: {len(finished)}/{len(streams)} complete, "
        f"errors {[s['error'] for s in streams if s['error']]}; direct streams to B: {len(spanned)} of "
        f"{len(direct)} ended after SIGTERM, "
        f"{sum(s['finish'] == 'length' for s in direct)} complete, {len(empty)} cut before the engine "
        f"({sum(s['error'] is None for s in empty)} of them with no error), {never} of their "
        f"{DIRECT * CHOICES} choices never reached it; replica B drained "
        f"{a.drained} in-flight requests and exited {drained_in:.1f}s after SIGTERM (attempt {attempt})"
    )
    # B had requests in flight when SIGTERM landed, else the zero-error check proves nothing
    assert a.drained >= 1, f"B held no request at SIGTERM in {ATTEMPTS} attempts:\n{log[-3000:]}"
    # the drain let every stream the engine held finish, those that ran past SIGTERM among them: what
    # --shutdown-timeout is for. None is cut part way.
    assert spanned, direct
    # Cut part way would be a choice with text and no end, or an error after a chunk.
    assert len(direct) == DIRECT and all(s["partial"] == 0 for s in direct), direct
    assert all(s["error"] is None or s in empty for s in direct), direct
    assert all(s["finish"] == "length" or s["never"] > 0 for s in direct), direct
    assert not errors, errors[:5]
    assert doc["callsAfterKill"] >= 1  # the gateway served while B drained
    assert drained_in < spot.DRAIN_LIMIT_S
    assert len(streams) == STREAMS
    # the finding: each stream either completed or ended with an error the client raised
    assert all(s["error"] is not None or s["finish"] == "length" for s in streams), streams
