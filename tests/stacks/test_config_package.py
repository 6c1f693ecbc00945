"""The config package stays split by job (its function-size gate is tests/stacks/test_function_size.py)."""

from pathlib import Path

import stacks.config

PACKAGE = Path(stacks.config.__file__).parent


def test_the_old_single_module_is_gone_and_the_package_answers_for_it():
    """Callers import `stacks.config` names; they come from the package's modules, one object each.
    The modules `load` and `resolve` share their names with the functions callers use
    (`config.load()`, `config.resolve(raw, ...)`): the package attribute must be the function."""
    import importlib
    import sys

    load_mod = importlib.import_module("stacks.config.load")
    resolve_mod = sys.modules["stacks.config.resolve"]
    schema_mod = sys.modules["stacks.config.schema"]
    assert not (PACKAGE.parent / "config.py").exists()
    assert stacks.config.load is load_mod.load and stacks.config.resolve is load_mod.resolve
    assert stacks.config.ConfigError is resolve_mod.ConfigError is load_mod.ConfigError
    assert stacks.config.StackIntent is resolve_mod.StackIntent
    assert stacks.config.load_file is load_mod.load_file and stacks.config.DEFAULT_POOLS is schema_mod.DEFAULT_POOLS
