"""Print the option table of `vllm serve` from the vLLM release of the venv it runs in, as JSON:
{"vllm": version, "options": {option string: {"flag": canonical long flag, "nargs": 0 | 1 | "?" | "*" | "+"}}}.

`stacks/catalog/vllm-serve-flags.json` is this output for the pinned image (the e2e tier checks they
agree); `stacks/config/vllm_flags.py` resolves extraArgs against it offline the way the real parser does.
Regenerate after a vLLM bump:
`.e2e/vllm/bin/python tests/e2e/dump_vllm_flags.py > stacks/catalog/vllm-serve-flags.json`.
"""

import argparse
import contextlib
import json
import sys

with contextlib.redirect_stdout(sys.stderr):  # vLLM logs to stdout; keep stdout for the JSON
    import vllm

    try:  # vLLM 0.32 layout
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    except ImportError:  # vLLM 0.16 (the Neuron image's release)
        from vllm.entrypoints.openai.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser


def table() -> dict:
    with contextlib.redirect_stdout(sys.stderr):
        parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    out = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs:
            continue
        canonical = next((o for o in longs if not o.startswith("--no-")), longs[0])
        if isinstance(
            action,
            (
                argparse._StoreConstAction,
                argparse._CountAction,
                argparse._HelpAction,
                argparse._VersionAction,
                argparse.BooleanOptionalAction,
            ),
        ):
            nargs = 0
        elif action.nargs is None:
            nargs = 1
        else:
            nargs = action.nargs if isinstance(action.nargs, str) else int(action.nargs)
        for o in action.option_strings:
            out[o] = {"flag": canonical, "nargs": nargs}
    return {"vllm": vllm.__version__, "options": dict(sorted(out.items()))}


if __name__ == "__main__":
    json.dump(table(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
