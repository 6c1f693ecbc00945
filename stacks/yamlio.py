"""YAML reading with libyaml's C loader when PyYAML has it (the catalogs and stack files are read on
every plan; the pure-Python loader was ~0.25 s of it)."""
import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str):
    return yaml.load(text, Loader=_Loader)
