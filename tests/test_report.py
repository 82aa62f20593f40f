"""The report renders from a synthetic run directory, with and without attacks, and escapes config strings."""

from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from benchmark.report import write_report
from fakes import make_run as _make_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("full")
    run = _make_run(tmp / "run", "<script>alert(1)</script>", "cifar10-jpeg", ("fgsm", "pgd", "autoattack"), eps=8 / 255)
    return write_report(run, tmp / "out")


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
    assert "lossy" in md and "not CIFAR-10 numbers" in md
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
    assert page.count("data:image/png;base64,") == 3
    assert 'src="reliability.png"' not in page


def test_quick_profile_without_autoattack(tmp_path: Path) -> None:
    md = write_report(_make_run(tmp_path / "run", "mc-dropout", "mnist", ("fgsm", "pgd")), tmp_path / "out").read_text(encoding="utf-8")
    assert "mc-dropout on mnist (quick profile)" in md
    assert "Not run: autoattack." in md
    assert "lossy" not in md


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
