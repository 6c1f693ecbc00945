"""The real `vllm serve` argument parser of the venv this runs in, asked over stdin. No model is loaded.

Importing vLLM costs about 8 s of CPU, so one process answers every question a test module has:
stdin carries one JSON request per line, stdout one JSON answer per line, in order.

- `{"op": "check", "lists": {name: [args...]}}` -> `{name: null | "error text"}`: does the rendered
  arg list parse and validate?
- `{"op": "attrs", "attrs": [dest, ...], "lists": {name: [args...]}}` -> `{name: {dest: value} | "error: ..."}`:
  what a spelling really turns on (e.g. that `--trust-remote` sets trust_remote_code).
- `{"op": "table"}` -> `{"vllm": version, "options": {option: {"flag": canonical long flag, "nargs": ...}}}`.

`stacks/catalog/vllm-serve-flags.json` holds the table of each pinned image's release, under `nvidia`
and `neuron` (the e2e tier checks they agree); `stacks/config/vllm_flags.py` resolves extraArgs against
them offline the way the real parser does. After a vLLM bump, `python tests/e2e/vllm_parser.py --table`
with that image's interpreter (.e2e/vllm or .e2e/vllm-neuron-parser) prints the table for its key.
"""

import argparse
import contextlib
import io
import json
import sys

with contextlib.redirect_stdout(sys.stderr):  # vLLM logs to stdout; stdout carries only the answers
    import vllm

    try:  # vLLM 0.32 layout
        from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    except ImportError:  # vLLM 0.16 (the Neuron image's release)
        from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

NO_VALUE = (
    argparse._StoreConstAction,
    argparse._CountAction,
    argparse._HelpAction,
    argparse._VersionAction,
    argparse.BooleanOptionalAction,
)


def _parser() -> argparse.ArgumentParser:
    with contextlib.redirect_stdout(sys.stderr):
        return make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))


def _last_line(err: io.StringIO, fallback: str) -> str:
    return (err.getvalue().strip().splitlines() or [fallback])[-1]


def check(args: list[str]) -> str | None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(sys.stderr):
            validate_parsed_serve_args(_parser().parse_args(args))
    except SystemExit as e:
        return _last_line(err, f"exit {e.code}")
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def attrs_of(args: list[str], attrs: list[str]) -> dict | str:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(sys.stderr):
            ns = _parser().parse_args(args)
    except SystemExit:
        return "error: " + _last_line(err, "exit")
    plain = (str, int, float, bool, type(None), list, dict)
    return {a: (v if isinstance(v, plain) else repr(v)) for a in attrs for v in [getattr(ns, a, None)]}


def table() -> dict:
    out = {}
    for action in _parser()._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs:
            continue
        canonical = next((o for o in longs if not o.startswith("--no-")), longs[0])
        if isinstance(action, NO_VALUE):
            nargs: int | str = 0
        elif action.nargs is None:
            nargs = 1
        else:
            nargs = action.nargs if isinstance(action.nargs, str) else int(action.nargs)
        for o in action.option_strings:
            out[o] = {"flag": canonical, "nargs": nargs}
    return {"vllm": vllm.__version__, "options": dict(sorted(out.items()))}


def answer(req: dict):
    if req["op"] == "check":
        return {k: check(v) for k, v in req["lists"].items()}
    if req["op"] == "attrs":
        return {k: attrs_of(v, req["attrs"]) for k, v in req["lists"].items()}
    if req["op"] == "table":
        return table()
    raise ValueError(f"unknown op {req['op']!r}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        json.dump(table(), sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        sys.exit(0)
    for line in sys.stdin:
        sys.stdout.write(json.dumps(answer(json.loads(line))) + "\n")
        sys.stdout.flush()
