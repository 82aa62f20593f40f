"""The report renders from a synthetic run directory, with and without attacks, and escapes config strings."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.metrics import reliability_table
from benchmark.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
EPS_FRACTIONS = (0.25, 0.5, 1.0, 2.0)


def _make_run(run_dir: Path, model: str, dataset: str, attacks: tuple[str, ...], eps: float = 0.3) -> Path:
    """A run directory shaped like the harness's output, with plausible values."""
    run_dir.mkdir(parents=True)
    rows = [("clean", None, m, v) for m, v in
            {"accuracy": 0.9123, "ece": 0.0312, "nll": 0.2871, "brier": 0.1402, "entropy": 0.21}.items()]
    rows += [("diagnostics", None, "zero_grad_share", 0.0)]
    for s in SIGMAS:
        values = {"accuracy": 0.9123 - s, "ece": 0.03 + s / 4, "nll": 0.29 + s, "brier": 0.14 + s / 2,
                  "entropy": 0.21 + s, "auroc": 0.5 + s / 2}
        rows += [("noise", s, m, v) for m, v in values.items()]
    for name in (*attacks, "robust") if attacks else ():
        for e in [f * eps for f in EPS_FRACTIONS] if name in ("pgd", "robust") else (eps,):
            acc = max(0.0, 0.9 - 0.5 * e / eps - (0.02 if name == "robust" else 0.0))
            rows += [(name, e, "accuracy", acc), (name, e, "accuracy_ci_low", max(0.0, acc - 0.02)),
                     (name, e, "accuracy_ci_high", acc + 0.02), (name, e, "accuracy_worst", max(0.0, acc - 0.01))]
    pd.DataFrame(rows, columns=["condition", "param", "metric", "value"]).to_csv(run_dir / "metrics.csv", index=False)

    gen = torch.Generator().manual_seed(0)
    probs = (4 * torch.randn(400, 10, generator=gen)).softmax(dim=1)
    y = torch.where(torch.rand(400, generator=gen) < 0.8, probs.argmax(dim=1), torch.randint(0, 10, (400,), generator=gen))
    reliability_table(probs, y).to_csv(run_dir / "reliability.csv", index=False)

    config = {
        "model": model, "dataset": dataset, "profile": "standard" if "autoattack" in attacks else "quick",
        "predictive": "stochastic", "samples": 8, "eot": 4, "reevals": 3, "n_examples": 400, "eps": eps,
        "threat": "Linf", "device": "cpu", "version": "0.1.0", "date": "2025-01-01T00:00:00+00:00", "seed": 0,
        "run_id": f"{dataset}-run", "notes": ["Dropout stays on at test time <on purpose>."],
        "attack_settings": {name: {"steps": 20, "restarts": 1, "step_size": 0.01} for name in attacks},
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


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
    assert md.startswith("# <script>alert(1)</script> on cifar10-jpeg (standard profile)")
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
