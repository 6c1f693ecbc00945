"""The docs people read: a short README with the two commands, and no relative link that goes nowhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import ROOT

README_MAX_BYTES = 10 * 1024
# The command lines `.ci/run` and the Makefile's header stand behind, word for word.
TWO_COMMANDS = (
    "make plan    # the main job, offline: the dev stack under Pulumi mocks (no AWS, no Pulumi CLI)",
    "make test    # every test tier: lint, types, unit/config/wiring/rendered/relations/deploy-rules/helm, plan, e2e",
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6} (.+?)\s*#*$", re.M)


def pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not `-` or `_`), spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCE.sub("", text))}


def broken_links(page: Path) -> list[str]:
    """`page: target` for every relative link whose file (or heading anchor) does not exist."""
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            out.append(f"{page.name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            out.append(f"{page.name}: {target} (no such heading)")
    return out


def test_readme_is_a_landing_page():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/ (limit {README_MAX_BYTES})"


def test_readme_has_the_two_commands_and_the_deploy_command():
    readme = (ROOT / "README.md").read_text()
    for line in TWO_COMMANDS:
        assert line in readme.splitlines(), line
    assert "`pulumi up -s dev`" in readme


def test_every_relative_link_resolves():
    found = [p.name for p in pages()]
    assert {"README.md", "CONTRIBUTING.md", "config-reference.md", "deploy.md"} <= set(found), found
    assert [b for p in pages() for b in broken_links(p)] == []


def test_every_docs_page_is_reachable_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in readme, page.name


def test_slug_matches_githubs_rule():
    # Written by hand from how GitHub renders these headings.
    assert slug("What you need") == "what-you-need"
    assert slug("After `pulumi up`: check it (`stacks.verify`)") == "after-pulumi-up-check-it-stacksverify"
    assert slug("`llm-serving:cluster`") == "llm-servingcluster"


def test_link_checker_can_fail(tmp_path):
    """Negative controls: a missing file and a missing heading are caught; good links, URLs and links
    inside code are not reported."""
    (tmp_path / "other.md").write_text("# Other\n\n## Real heading\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Here\n\n"
        "[ok](other.md) [ok](other.md#real-heading) [ok](#here) [url](https://example.com/x#y)\n"
        "[bad](missing.md) [bad](other.md#no-such-heading) [bad](#nowhere)\n"
        "`[in code](nope.md)`\n\n```\n[in a block](nope.md)\n```\n"
    )
    assert broken_links(page) == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#no-such-heading (no such heading)",
        "page.md: #nowhere (no such heading)",
    ]


NUMBERS_ROW = re.compile(
    r"\| [^|]+ \| `(?P<file>[^`]+)` \| (?P<time>\d+m\d\ds) \| \$(?P<lo>[\d.]+)\u2013(?P<hi>[\d.]+) \|"
)


def numbers_rows(text: str) -> list[re.Match]:
    return [m for line in text.splitlines() if (m := NUMBERS_ROW.fullmatch(line))]


def test_readme_numbers_are_what_the_plan_computes(plan_of):
    """The README's time and cost table: each row recomputed from the plan of its stack file."""
    rows = numbers_rows((ROOT / "README.md").read_text())
    assert {m["file"] for m in rows} >= {"Pulumi.dev.yaml", "tests/configs/gateway-database.ok.yaml"}
    for m in rows:
        _intent, _rec, out = plan_of(ROOT / m["file"])
        summary = json.loads((out / "summary.json").read_text())
        seconds = summary["deployTime"]["seconds"]
        cost = summary["stackHourlyUsd"]
        assert m["time"] == f"{seconds // 60}m{seconds % 60:02d}s", m["file"]
        assert (m["lo"], m["hi"]) == (f"{cost['min']:.2f}", f"{cost['max']:.2f}"), m["file"]


def test_numbers_rows_are_read():
    """Negative control: a row is recognised, and a changed figure is one the test above would see."""
    row = "| dev | `Pulumi.dev.yaml` | 28m49s | $1.82\u20132.64 |"
    (m,) = numbers_rows(row)
    assert (m["file"], m["time"], m["lo"], m["hi"]) == ("Pulumi.dev.yaml", "28m49s", "1.82", "2.64")
    assert numbers_rows(row.replace("28m49s", "28m49")) == []
