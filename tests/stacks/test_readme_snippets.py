"""docs/connect.md's snippets are the files the client tier runs (tests/e2e/clients/)."""

import re

from tests.conftest import ROOT


def blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)\n```", section, re.S)


def test_connect_snippets_are_the_files_the_client_tier_runs():
    page = (ROOT / "docs" / "connect.md").read_text()
    clients = ROOT / "tests" / "e2e" / "clients"
    assert blocks(page, "python") == [(clients / "connect.py").read_text().rstrip("\n")]
    assert blocks(page, "js") == [(clients / "connect.mjs").read_text().rstrip("\n")]


def test_a_changed_snippet_would_fail():
    # Negative control: one character off in the page's Python block no longer equals the file.
    page = (ROOT / "docs" / "connect.md").read_text().replace('"Hello!"', '"Hello?"', 1)
    clients = ROOT / "tests" / "e2e" / "clients"
    assert blocks(page, "python") != [(clients / "connect.py").read_text().rstrip("\n")]
