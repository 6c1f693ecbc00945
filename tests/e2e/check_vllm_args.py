"""Parse rendered vLLM arg lists with the real `vllm serve` parser of the venv it runs in.

stdin: JSON {name: [args...]}; stdout: JSON {name: null | "error text"}. No model is loaded.
"""

import contextlib
import io
import json
import sys

try:  # vLLM 0.32 layout
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
except ImportError:  # vLLM 0.16 (the Neuron image's release)
    from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser


def check(args: list[str]) -> str | None:
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = parser.parse_args(args)
            validate_parsed_serve_args(ns)
    except SystemExit as e:
        return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {e.code}"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


if __name__ == "__main__":
    lists = json.load(sys.stdin)
    json.dump({k: check(v) for k, v in lists.items()}, sys.stdout)
