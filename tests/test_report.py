"""The report renders from a synthetic run directory, with and without attacks, and escapes config strings;
the dataset's description recorded in the run shows in the report and on the leaderboard."""

import json
from pathlib import Path

import pytest
from fakes import make_finished_run
from fakes import make_run as _make_run

from benchmark import diagnostics
from benchmark.errors import BenchmarkError
from benchmark.leaderboard import publish
from benchmark.registry import list_models
from benchmark.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: a manifest description with text that Markdown and HTML must show as text
DESCRIPTION = "CIFAR-10 decoded from a public JPEG (quality 75) copy <b>lossy</b> | [not](x) the official pixels"


def _describe(run_dir: Path, description: str) -> Path:
    """Record ``description`` as the dataset's description in the run's config, as the runner does."""
    path = run_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "dataset_description": description}))
    return run_dir


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("full")
    run = _make_run(tmp / "run", "<script>alert(1)</script>", "cifar10-jpeg", ("fgsm", "pgd", "autoattack"),
                    eps=8 / 255)
    return write_report(_describe(run, DESCRIPTION), tmp / "out")


def test_writes_every_file_with_valid_pngs(full_report: Path) -> None:
    out = full_report.parent
    assert full_report == out / "report.md"
    assert (out / "report.html").stat().st_size > 0
    for name in ("reliability.png", "noise.png", "eps.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_markdown_content(full_report: Path) -> None:
    md = full_report.read_text(encoding="utf-8")
    assert md.startswith("# &lt;script&gt;alert(1)&lt;/script&gt; on cifar10-jpeg (standard profile)")  # inert as text
    assert "<script" not in md
    assert "0.9123" in md and "0.0312" in md
    assert ("> **Note:** Dataset cifar10-jpeg: CIFAR-10 decoded from a public JPEG (quality 75) copy "
            "&lt;b&gt;lossy&lt;/b&gt; "
            "\\| \\[not\\](x) the official pixels") in md
    assert "8/255" in md
    assert "Dropout stays on at test time" in md
    assert "pgd: steps=20, restarts=1, step_size=0.01" in md  # the attack's budget, under "How this model was attacked"
    for image in ("reliability.png", "noise.png", "eps.png"):
        assert f"]({image})" in md
    assert "not run" not in md.lower()


def test_html_is_self_contained_and_escaped(full_report: Path) -> None:
    page = (full_report.parent / "report.html").read_text(encoding="utf-8")
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;on purpose&gt;" in page
    assert "<b>lossy" not in page and "copy &lt;b&gt;lossy&lt;/b&gt; | [not](x) the official pixels</p>" in page
    assert page.count("data:image/png;base64,") == 3
    assert 'src="reliability.png"' not in page


def test_quick_profile_without_autoattack(tmp_path: Path) -> None:
    run = _make_run(tmp_path / "run", "mc-dropout", "mnist", ("fgsm", "pgd"))
    md = write_report(run, tmp_path / "out").read_text(encoding="utf-8")
    assert "mc-dropout on mnist (quick profile)" in md
    elsewhere = next(line for line in md.splitlines() if line.startswith("Not in the quick profile's plan: "))
    assert "autoattack" in elsewhere and "fgsm" not in elsewhere and "pgd," not in elsewhere
    assert "Note:** Dataset" not in md  # no description recorded, no note


def test_attacks_not_applicable_are_named_with_their_reason(tmp_path: Path) -> None:
    run = _make_run(tmp_path / "run", "baseline", "two-class", ("fgsm", "pgd"))
    config = json.loads((run / "config.json").read_text())
    config["attacks_not_applicable"] = {"pgd-dlr": "the DLR margin needs at least three classes"}
    (run / "config.json").write_text(json.dumps(config))
    md = write_report(run, tmp_path / "out").read_text(encoding="utf-8")
    assert "Not applicable to this model: pgd-dlr (the DLR margin needs at least three classes)." in md


def test_run_without_attacks_renders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    md = write_report(_make_run(tmp_path / "run", "endp", "mnist", ()), out).read_text(encoding="utf-8")
    assert "Attacks: not run." in md
    assert "Robust accuracy at ε = 0.3 | not run" in md
    assert not (out / "eps.png").exists() and "eps.png" not in md
    assert (out / "report.html").exists()


def test_incomplete_run_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="config.json"):
        write_report(tmp_path, tmp_path / "out")


def test_the_checks_table_lists_every_declared_flag_in_order(full_report: Path) -> None:
    md = full_report.read_text(encoding="utf-8")
    table = md.split("### Gradient-masking checks", 1)[1]
    listed = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:]
    assert listed == [flag.name for flag in diagnostics.FLAGS]
    assert "| zero-grad | ok | zero_grad_share = 0.0000 |" in md
    assert "| eps-no-collapse | not applicable | large_eps_accuracy = n/a |" in md
    assert "| condition-failed | ok | failed: none |" in md


def test_every_dataset_description_shows_under_its_leaderboard_heading_escaped(tmp_path: Path) -> None:
    described = {"mnist": "The <i>official</i> MNIST | 60k/10k", "my-set": DESCRIPTION}
    for dataset, description in described.items():
        for model in ("model-a", "model-b"):
            _describe(make_finished_run(tmp_path, model, dataset), description)
        publish(tmp_path, dataset)
    boards = tmp_path / "leaderboards"
    mnist = (boards / "mnist.md").read_text(encoding="utf-8")
    assert mnist.startswith("# Leaderboard: mnist\n\n> The &lt;i&gt;official&lt;/i&gt; MNIST \\| 60k/10k\n\n")
    assert mnist.count("> The &lt;i&gt;") == 1  # once per dataset, not once per run
    mine = (boards / "my-set.md").read_text(encoding="utf-8")
    assert "> CIFAR-10 decoded from a public JPEG (quality 75) copy &lt;b&gt;lossy&lt;/b&gt; \\| \\[not\\](x)" in mine
    page = (boards / "index.html").read_text(encoding="utf-8")
    assert "<i>official" not in page and "<b>lossy" not in page
    note = "<blockquote>The &lt;i&gt;official&lt;/i&gt; MNIST | 60k/10k</blockquote>"
    lacking = ", ".join(name for name in list_models() if name not in ("model-a", "model-b"))
    protocol = f"<p>Every row of this table was measured under the quick protocol. Registered plugins without a " \
               f"row here yet: {lacking}.</p>"
    assert f"<h2>mnist</h2>\n{note}\n<h3>Protocol: quick</h3>\n{protocol}\n<table>" in page
    assert page.count(note) == 1  # once under the dataset's heading, not once per protocol
    assert "<blockquote>CIFAR-10 decoded from a public JPEG (quality 75) copy &lt;b&gt;lossy&lt;/b&gt;" in page


def test_a_run_without_a_recorded_description_shows_no_note(tmp_path: Path) -> None:
    make_finished_run(tmp_path, "model-a")
    publish(tmp_path, "mnist")
    assert "\n> " not in (tmp_path / "leaderboards" / "mnist.md").read_text(encoding="utf-8")
    page = (tmp_path / "leaderboards" / "index.html").read_text(encoding="utf-8")
    assert "<blockquote>" not in page and "<h2>mnist</h2>\n<h3>Protocol: quick</h3>" in page
