"""The report's section "Does the uncertainty see the attack?" and its two figures appear for a run that stored
uncertainty scores, drawn on the very points the detection rows were measured on, and not for a run stored before;
the board's detection figure is listed and drawn only where a row measured detection."""

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fakes import make_finished_run
from fakes import make_run as _make_run

from benchmark import detection, figures
from benchmark.board_pages import DETECTION_FIGURE, detection_rows, markdown_page, protocol_figures
from benchmark.leaderboard import publish
from benchmark.metrics import auroc
from benchmark.names import CLEAN, DETECTION, NOISE, adaptive_condition, condition_id, score_metric
from benchmark.report import UNCERTAINTY_FIGURES, write_report
from benchmark.results import RunResults
from benchmark.store import RunStore
from benchmark.uncertainty import ENTROPY, MUTUAL_INFORMATION
from benchmark.worst_case import worst_cases

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTION = "Does the uncertainty see the attack?"
SCORES = (ENTROPY, MUTUAL_INFORMATION)
N, R, C = 40, 3, 10


def _store_scores(run_dir: Path) -> Path:
    """Give a synthetic stochastic run (fakes.make_run) what the harness now stores: every condition's arrays with
    its uncertainty scores, the adaptive attack's points at the dataset eps, another dataset's scores, and the rows
    benchmark.detection makes of them (computed here by the harness's own functions)."""
    config = json.loads((run_dir / "config.json").read_text())
    config["ood"] = "fashion-mnist"
    (run_dir / "config.json").write_text(json.dumps(config))
    store, rng = RunStore(run_dir), np.random.default_rng(0)
    y = rng.integers(0, C, N)

    def probs() -> np.ndarray:
        return torch.randn(N, C, generator=torch.Generator().manual_seed(int(rng.integers(1 << 30)))).softmax(1).numpy()

    def scores(shift: float, shape=(N,)) -> dict[str, np.ndarray]:
        # the mutual information spans decades, as a real one does: its panel is drawn on a log axis
        return {ENTROPY: (rng.uniform(0.1, 1.0, shape) + shift).astype(np.float32),
                MUTUAL_INFORMATION: (10.0 ** rng.uniform(-5, -1, shape) * (1 + 10 * shift)).astype(np.float32)}

    correct = np.tile(np.arange(N) < 30, (R, 1))
    store.save_condition("clean", [], {"probs": probs(), "correct": correct, "selection": np.where(correct, 1.0, -1.0),
                                       **scores(0.0)})
    metrics = RunResults.read(run_dir).metrics
    for sigma in sorted({float(s) for s in metrics[metrics.condition == NOISE].param if s > 0}):
        store.save_condition(condition_id(NOISE, sigma), [], {"probs": probs(), "correct": correct,
                                                              **scores(sigma)})
    attacks = [(condition_id(name, float(param)), float(param)) for name, param in
               metrics[metrics.condition.isin(config["attack_settings"])][["condition", "param"]]
               .drop_duplicates().itertuples(index=False)]
    for cid, eps in attacks:
        broken = rng.random(N) < min(0.9, eps / config["eps"])
        store.save_condition(cid, [], {"probs": probs(), "correct": np.tile(~broken, (R, 1)),
                                       "selection": np.tile(np.where(broken, -1.0, 1.0), (R, 1)),
                                       **scores(0.5, (R, N))})
    for score in SCORES:
        attacked = np.arange(N) % 2 == 0
        values = {k: np.where(attacked, v, np.nan) for k, v in scores(0.0, (R, N)).items()}
        store.save_condition(condition_id(adaptive_condition(score), config["eps"]), [],
                             {"probs": probs(), "correct": np.tile(~attacked, (R, 1)), **values})
    store.save_condition("ood", [], scores(0.3))

    @functools.cache
    def arrays(cid: str):
        return store.load_arrays(cid) if (store.conditions / f"{cid}.npz").exists() else None

    def selection(cid: str):
        return arrays(cid)["selection"]

    cases = worst_cases(attacks, arrays, selection)
    rows = (detection.detection_rows(SCORES, cases, arrays) + detection.attacked_rows(cases, arrays, y)
            + detection.selective_rows(CLEAN, None, arrays("clean"))
            + detection.ood_rows(SCORES, arrays("clean"), arrays("ood")))
    rows += [row for sigma in sorted({float(s) for s in metrics[metrics.condition == NOISE].param if s > 0})
             for row in detection.selective_rows(NOISE, sigma, arrays(condition_id(NOISE, sigma)))]
    pd.concat([metrics, pd.DataFrame(rows)]).to_csv(run_dir / "metrics.csv", index=False)
    return run_dir


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("scored")
    run = _store_scores(_make_run(tmp / "run", "mc-dropout", "mnist", ("fgsm", "pgd")))
    return run, write_report(run, tmp / "out")


def test_the_section_and_both_figures_appear_for_a_run_with_scores(scored: tuple[Path, Path]) -> None:
    _, report = scored
    md = report.read_text(encoding="utf-8")
    assert f"## {SECTION}" in md
    for name in UNCERTAINTY_FIGURES:
        data = (report.parent / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
        assert f"]({name})" in md
    page = (report.parent / "report.html").read_text(encoding="utf-8")
    assert f"<h2>{SECTION}</h2>" in page and page.count("data:image/png;base64,") == 5
    section = md.split(f"## {SECTION}", 1)[1].split("## Notes", 1)[0]
    # both scores of a stochastic model, non-adaptive and adaptive, at the dataset eps
    assert "| 0.3 (dataset ε) | entropy |" in section and "| 0.3 (dataset ε) | mutual_information |" in section
    assert "AUROC, fashion-mnist against clean" in section
    assert "| attacked, ε = 0.3 (worst case) |" in section and "| noise σ = 0.5 |" in section
    assert "accuracy at 80% coverage" in section


def test_the_table_shows_the_detection_rows(scored: tuple[Path, Path]) -> None:
    run, report = scored
    results = RunResults.read(run)
    md = report.read_text(encoding="utf-8")
    for score in SCORES:
        for detector in (score, f"{score}_adaptive"):
            value = results.value(DETECTION, score_metric(detector, "auroc"), 0.3)
            assert np.isfinite(value) and f"{value:.3f} \\[" in md


def test_the_figure_draws_the_points_the_detection_rows_measured(scored: tuple[Path, Path], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    run, _ = scored
    drawn, draw = {}, figures.plot_score_distributions

    def record(panels, thresholds, path):
        drawn.update(panels=panels, thresholds=thresholds)
        draw(panels, thresholds, path)

    monkeypatch.setattr(figures, "plot_score_distributions", record)
    write_report(run, tmp_path)
    results = RunResults.read(run)
    assert list(drawn["panels"]) == list(SCORES)
    for score, groups in drawn["panels"].items():
        clean, noisy, adversarial, adaptive = groups.values()
        assert "σ = 0.3" in list(groups)[1]  # the largest sigma below 0.5
        assert len(adaptive) > 0
        assert auroc(torch.as_tensor(clean), torch.as_tensor(adversarial)) == pytest.approx(
            results.value(DETECTION, score_metric(score, "auroc"), 0.3))
        assert drawn["thresholds"][score] == results.value(DETECTION, score_metric(score, "threshold"), 0.3)


def test_a_run_stored_before_the_scores_has_no_section(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in UNCERTAINTY_FIGURES:  # an earlier render's figures must not survive a re-render
        (out / name).write_bytes(PNG_MAGIC)
    md = write_report(_make_run(tmp_path / "run", "mc-dropout", "mnist", ("fgsm", "pgd")), out).read_text()
    assert SECTION not in md
    assert not any((out / name).exists() for name in UNCERTAINTY_FIGURES)


def _board_rows(detected: bool) -> pd.DataFrame:
    auroc_value = 0.8 if detected else np.nan
    return pd.DataFrame({"model": ["baseline", "mc-dropout"], "robust_acc": [0.1, 0.3],
                         "detection_score": ["entropy", "mutual_information"],
                         "detection_auroc": [auroc_value, 0.7 if detected else np.nan],
                         "detection_auroc_adaptive": [0.5, np.nan]})


def test_the_board_figure_is_drawn_only_for_rows_with_detection(tmp_path: Path) -> None:
    path = tmp_path / "detection.png"
    assert figures.plot_board_detection(_board_rows(True), path)
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert not figures.plot_board_detection(_board_rows(False), path)
    assert not path.exists()  # the older figure is removed with the rows that had it
    assert len(detection_rows(_board_rows(True))) == 2
    assert DETECTION_FIGURE in protocol_figures(_board_rows(True))
    assert DETECTION_FIGURE not in protocol_figures(_board_rows(False))


@pytest.mark.parametrize("detected", [True, False])
def test_the_board_pages_show_the_detection_figure_where_it_is_drawn(tmp_path: Path, detected: bool) -> None:
    for model in ("model-a", "model-b"):
        run = make_finished_run(tmp_path, model)
        if not detected:  # a row from before detection was measured: its columns empty
            row = json.loads((run / "summary.json").read_text())
            row.update(detection_auroc=None, detection_auroc_adaptive=None, detection_score="")
            (run / "summary.json").write_text(json.dumps(row))
    publish(tmp_path, "mnist")
    boards = tmp_path / "leaderboards"
    md = (boards / "mnist.md").read_text(encoding="utf-8")
    figure = next(boards.glob("figures/mnist/*/tradeoff.png")).with_name("detection.png")
    assert (f"/{figure.name})" in md) == detected
    assert figure.exists() == detected
    assert ("detection.png" in (boards / "index.html").read_text(encoding="utf-8")) == detected
    if detected:
        # the board's own markdown of the same rows lists it too
        from benchmark.board import load_board
        assert "detection.png" in markdown_page(load_board(tmp_path, "mnist"))
