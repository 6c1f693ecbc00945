"""Parse arg lists with the real `vllm serve` parser and print chosen attributes of the result.

stdin: JSON {"attrs": [dest, ...], "lists": {name: [args...]}}; stdout: JSON {name: {dest: value} | "error"}.
Used to show what an extraArgs spelling really turns on (e.g. that `--trust-remote` sets trust_remote_code).
"""

import contextlib
import io
import json
import sys

with contextlib.redirect_stdout(sys.stderr):  # vLLM logs to stdout at import
    try:  # vLLM 0.32 layout
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    except ImportError:  # vLLM 0.16
        from vllm.entrypoints.openai.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser


def attrs_of(args: list[str], attrs: list[str]):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(sys.stderr):
            ns = make_arg_parser(FlexibleArgumentParser(prog="vllm serve")).parse_args(args)
    except SystemExit:
        return "error: " + (err.getvalue().strip().splitlines() or ["exit"])[-1]
    return {
        a: (v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else repr(v))
        for a in attrs
        for v in [getattr(ns, a, None)]
    }


if __name__ == "__main__":
    req = json.load(sys.stdin)
    json.dump({k: attrs_of(v, req["attrs"]) for k, v in req["lists"].items()}, sys.stdout)
