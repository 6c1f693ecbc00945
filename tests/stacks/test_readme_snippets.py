"""The README's "Connect an application" snippets are the files the client tier runs (tests/e2e/clients/)."""

import re

from tests.conftest import ROOT


def blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)\n```", section, re.S)


def test_readme_snippets_are_the_files_the_client_tier_runs():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Connect an application", 1)[1].split("\n## ", 1)[0]
    clients = ROOT / "tests" / "e2e" / "clients"
    assert blocks(section, "python") == [(clients / "connect.py").read_text().rstrip("\n")]
    assert blocks(section, "js") == [(clients / "connect.mjs").read_text().rstrip("\n")]
