"""`stacks.plan --bench RESULT.json`: the measured knee beside the planned max concurrency, the 20 %
warning at its edges, and one-line refusals of a bad result file or a model the stack does not serve."""

import json

import pytest

from stacks import plan
from stacks.measure import compare
from tests.conftest import ROOT

DEV = ROOT / "Pulumi.dev.yaml"


def result(model="qwen3-0.6b", knee=8, levels=(1, 2, 4, 8, 16), usd=(1.25, 3.5)):
    k = None
    if knee is not None:
        per_m = {"acceleratorNodes": usd[0], "wholeStack": usd[1]}
        k = {"concurrency": knee, "outputTokensPerSecond": 100.0, "usdPerMillionOutputTokens": per_m}
    return {"model": model, "levels": [{"concurrency": c} for c in levels], "knee": k, "slo": {}}


def write(tmp_path, doc, name="r.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


PLANNED = {"qwen3-0.6b": compare.Planned("qwen3-0-6b", 10.0, 1)}


@pytest.mark.parametrize(
    ("knee", "diff", "warned"),
    # planned 10.0 x 1 replica: 8 is -20 % and 12 is +20 % (not more than 20 %); 7 and 13 are 30 % off
    [(8, "-20%", False), (12, "+20%", False), (7, "-30%", True), (13, "+30%", True), (10, "+0%", False)],
)
def test_the_twenty_percent_edges(tmp_path, knee, diff, warned):
    lines = compare.compare(compare.read_results(write(tmp_path, result(knee=knee))), PLANNED)
    assert lines[0] == (
        f"bench qwen3-0-6b: planned max concurrency 10.0 (10.0 x 1 replicas); measured knee {knee} "
        f"(tested 1,2,4,8,16, {diff}); $ per 1M output tokens at the knee: accelerator nodes $1.25, whole stack $3.50"
    )
    assert len(lines) == (2 if warned else 1)
    if warned:
        assert lines[1] == (
            f"warning: qwen3-0-6b: the measured knee {knee} differs from the planned max concurrency 10.0 "
            f"by {diff} (more than 20%)"
        )


def test_replicas_multiply_the_plan(tmp_path):
    # 6.5 per replica x 2 replicas = 13.0; a knee of 8 is 38 % below it
    planned = {"qwen3-0.6b": compare.Planned("qwen3-0-6b", 6.5, 2)}
    lines = compare.compare(compare.read_results(write(tmp_path, result(knee=8, usd=(None, 2.0)))), planned)
    assert "planned max concurrency 13.0 (6.5 x 2 replicas); measured knee 8 (tested 1,2,4,8,16, -38%)" in lines[0]
    assert lines[0].endswith("accelerator nodes n/a, whole stack $2.00") and lines[1].startswith("warning: ")


def test_no_knee_is_a_warning(tmp_path):
    lines = compare.compare(compare.read_results(write(tmp_path, result(knee=None))), PLANNED)
    assert lines == [
        "bench qwen3-0-6b: planned max concurrency 10.0 (10.0 x 1 replicas); measured: no knee",
        "warning: qwen3-0-6b: no tested concurrency (1,2,4,8,16) met the SLO; the planned 10.0 is unconfirmed",
    ]


def test_a_list_of_results(tmp_path):
    planned = {**PLANNED, "other": compare.Planned("other", 4.0, 1)}
    docs = [result(knee=10), result(model="other", knee=4)]
    lines = compare.compare(compare.read_results(write(tmp_path, docs)), planned)
    assert [ln.split(":")[0] for ln in lines] == ["bench qwen3-0-6b", "bench other"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("{not json", "not JSON"),
        (json.dumps({"levels": [{"concurrency": 1}], "knee": None}), "model: Field required"),
        (json.dumps(result(knee=0)), "knee.concurrency: Input should be greater than or equal to 1"),
        (json.dumps(result(levels=())), "levels: List should have at least 1 item"),
        (json.dumps([result(), {"model": "x"}]), "[1].levels: Field required"),
        ("[]", "an empty list"),
        (json.dumps(result(usd=(float("inf"), 1))).replace("Infinity", "1e999"), "acceleratorNodes"),
    ],
    ids=["missing", "not-json", "no-model", "knee-0", "no-levels", "list-item", "empty", "inf"],
)
def test_bad_result_files(tmp_path, content, message):
    p = tmp_path / "r.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(compare.BadResult) as e:
        compare.read_results(p)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).endswith("— pass the JSON `python -m stacks.bench STACK --json` printed")


def test_a_model_not_in_the_stack(tmp_path):
    with pytest.raises(compare.BadResult, match=r"model 'llama' is not in this stack \(it serves: qwen3-0.6b\)"):
        compare.compare(compare.read_results(write(tmp_path, result(model="llama"))), PLANNED)


def test_plan_cli(tmp_path, capsys, plan_of):
    # the planner's own figure for dev, read from its summary (not computed by the code under test)
    _, _, out = plan_of(DEV)
    (row,) = json.loads((out / "summary.json").read_text())["models"]
    planned = row["maxConcurrency"] * row["replicas"]["min"]
    far = int(planned * 2) + 1  # more than 20 % above
    code = plan.main(["dev", "--bench", str(write(tmp_path, result(knee=far)))])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert f"bench qwen3-0-6b: planned max concurrency {planned:.1f}" in text
    assert f"warning: qwen3-0-6b: the measured knee {far} differs" in text
    # by key too, and a model the stack does not serve is one line, exit 2
    code = plan.main(["dev", "--bench", str(write(tmp_path, result(model="llama")))])
    text, err = capsys.readouterr()
    assert code == 2 and text == "" and len(err.splitlines()) == 1 and "model 'llama' is not in this stack" in err
    code = plan.main(["dev", "--bench", str(tmp_path / "nope.json")])
    text, err = capsys.readouterr()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: --bench ")
