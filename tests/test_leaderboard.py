"""A leaderboard row's identity is its whole protocol: runs with overrides never replace or mix with the
profile's own rows (docs/architecture.md, "Leaderboard schema")."""

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from fakes import make_finished_run

from benchmark.attacks.plan import attack_plan
from benchmark.board import datasets_on_board, flagged, protocols, table
from benchmark.leaderboard import publish, publish_all
from benchmark.profiles import get_profile
from benchmark.results import RunResults


def test_a_protocol_names_the_profile_and_every_override():
    assert get_profile("quick").protocol(0.3, 0.3) == "quick"
    assert get_profile("quick", n_test=500).protocol(0.3, 0.3) == "quick"  # the profile's own value
    assert get_profile("quick", n_test=100).protocol(0.1, 0.3) == "quick[eps=0.1, n_test=100]"
    assert get_profile("standard").protocol(8 / 255, 8 / 255, given_weights=True) == "standard[weights=given]"
    plan = attack_plan(pgd_steps=5, pgd_restarts=1, square_queries=5, autoattack=True)
    custom = get_profile("standard", attacks=plan)
    assert custom.protocol(0.3, 0.3).startswith("standard[attacks=custom-")


def test_a_run_with_overrides_gets_a_table_of_its_own(tmp_path):
    """Before, the latest run per (model, profile) won: a --eps 0.1 run replaced the real row at eps 0.3."""
    make_finished_run(tmp_path, "model-a", robust=0.2)
    make_finished_run(tmp_path, "model-b", robust=0.3)
    make_finished_run(tmp_path, "model-a", robust=0.9, protocol="quick[eps=0.1]")
    frame = table(tmp_path, "mnist")
    assert [(p, list(part.model), list(part.robust_acc)) for p, part in protocols(frame)] == [
        ("quick", ["model-b", "model-a"], [0.3, 0.2]), ("quick[eps=0.1]", ["model-a"], [0.9])]
    publish(tmp_path, "mnist")
    board = tmp_path / "leaderboards"
    assert sorted(pd.read_csv(board / "mnist.csv").protocol) == ["quick", "quick", "quick[eps=0.1]"]
    markdown = (board / "mnist.md").read_text()
    first, second = markdown.split("## Protocol: quick\\[eps=0.1\\]")
    assert "## Protocol: quick" in first and "| 0.200 \\[" in first and "| 0.900 \\[" not in first
    assert "| 0.900 \\[" in second and "| 0.200 \\[" not in second and "model-b" not in second
    page = (board / "index.html").read_text()
    assert page.index("<h3>Protocol: quick</h3>") < page.index("<h3>Protocol: quick[eps=0.1]</h3>")
    for protocol in ("quick", "quick_eps_0.1"):  # each protocol's report, neither overwriting the other
        assert (board / "reports" / "mnist" / protocol / "model-a" / "report.md").is_file()


def test_a_profile_table_names_the_registered_plugins_it_lacks(tmp_path):
    """A short table must not read as the whole field: the page says which plugins have no row yet."""
    from benchmark.registry import list_models

    make_finished_run(tmp_path, "baseline")
    make_finished_run(tmp_path, "endp")
    make_finished_run(tmp_path, "endp", protocol="quick[eps=0.1]")
    publish(tmp_path, "mnist")
    markdown = (tmp_path / "leaderboards" / "mnist.md").read_text()
    lacking = [name for name in list_models() if name not in ("baseline", "endp")]
    assert f"Registered plugins without a row here yet: {', '.join(lacking)}." in markdown
    assert markdown.count("without a row here yet") == 1  # a table with overrides is not a survey of the field
    assert f"without a row here yet: {', '.join(lacking)}." in (tmp_path / "leaderboards" / "index.html").read_text()


def test_rows_rank_by_the_area_under_the_robust_curve_and_flagged_rows_apart(tmp_path):
    """At MNIST's eps 0.3 every quick row reads 0; the area under the curve still separates them, and a row
    whose run raised a gradient-masking flag never outranks an unflagged one."""
    make_finished_run(tmp_path, "flat-zero", robust=0.0, robust_auc=0.10)
    make_finished_run(tmp_path, "holds-longer", robust=0.0, robust_auc=0.40)
    make_finished_run(tmp_path, "gradient-masker", robust=0.6, robust_auc=0.90, flags="zero-grad")
    make_finished_run(tmp_path, "higher-at-eps", robust=0.05, robust_auc=0.20,
                      flags="short-attack-not-converged")  # information: the row stays ranked
    assert list(table(tmp_path, "mnist").model) == ["holds-longer", "higher-at-eps", "flat-zero", "gradient-masker"]
    publish(tmp_path, "mnist")
    board = tmp_path / "leaderboards"
    ranked, flagged = (board / "mnist.md").read_text().split("### Flagged")
    # (a name no registered plugin contains: the table's note lists the registered plugins without a row)
    assert "holds-longer" in ranked and "gradient-masker" not in ranked
    assert "gradient-masker" in flagged and "zero-grad" in flagged and "holds-longer" not in flagged
    page = (board / "index.html").read_text()
    assert page.index("holds-longer") < page.index("<h4>Flagged</h4>") < page.index(">gradient-masker<")


def test_pages_with_rows_of_a_retired_profile_say_so_at_the_top(tmp_path):
    """Rows of the retired reference profile had no AutoAttack: the reader is told before any table."""
    make_finished_run(tmp_path, "quick-only", protocol="quick")
    publish(tmp_path, "mnist")
    board = tmp_path / "leaderboards"
    assert "without AutoAttack" not in (board / "mnist.md").read_text()
    make_finished_run(tmp_path, "old-row", protocol="reference")
    publish(tmp_path, "mnist")
    for page in (board / "mnist.md", board / "index.html"):
        text = page.read_text()
        assert text.count("without AutoAttack") == 1 and text.index("without AutoAttack") < text.index("old-row")


def test_no_published_board_demotes_its_baseline():
    """A flag is a promise that the number may be too high: a plain CNN's row, attacked to convergence, must not
    carry one (the MNIST board ranked its baseline among the flagged rows for a short PGD its number did not use)."""
    boards = [path for path in (Path(__file__).parents[1] / "leaderboards").glob("*.csv")
              if not path.stem.endswith(("-eps", "-noise"))]
    assert boards
    for path in boards:
        baseline = pd.read_csv(path).query("model == 'baseline'")
        assert not baseline.empty, path.name
        assert not flagged(baseline).any(), (path.name, baseline.flags.tolist())


def test_the_curves_and_figures_of_every_model_are_published(tmp_path):
    for model in ("baseline", "model-a"):
        make_finished_run(tmp_path, model)
    publish(tmp_path, "mnist")
    board = tmp_path / "leaderboards"
    eps = pd.read_csv(board / "mnist-eps.csv")
    assert sorted(set(eps.model)) == ["baseline", "model-a"]
    robust = eps[eps.attack == "robust"]
    assert sorted(set(robust.eps)) == [0.025, 0.05, 0.1]  # the sweep up to the row's eps; 0.2 is the collapse check
    assert sorted(set(eps.attack)) == ["fgsm", "pgd", "robust"]  # each attack's own accuracy, and the worst case
    assert (eps.accuracy_ci_low <= eps.accuracy).all() and (eps.accuracy <= eps.accuracy_ci_high).all()
    noise = pd.read_csv(board / "mnist-noise.csv")
    assert sorted(set(noise.sigma)) == [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]
    assert list(noise.columns) == ["model", "protocol", "sigma", "accuracy", "ece", "auroc"]
    markdown, page = (board / "mnist.md").read_text(), (board / "index.html").read_text()
    for name in ("eps", "noise", "tradeoff"):
        figure = board / "figures" / "mnist" / "quick" / f"{name}.png"
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(figures/mnist/quick/{name}.png)" in markdown and f'src="figures/mnist/quick/{name}.png"' in page


def test_the_baseline_is_black_and_dashed_and_models_of_one_colour_differ_in_marker_and_line():
    """A board has more models than a reader tells colours apart: two models of one colour must still differ in
    both marker (the scatter shows colour and marker only) and line style."""
    from benchmark.figures import model_styles

    styles = model_styles(["baseline", *(f"m{i}" for i in range(36))])
    assert (styles.pop("baseline")["color"], "--") == ("black", "--")
    assert all(s["linestyle"] != "--" and s["color"] != "black" for s in styles.values())
    for a, b in itertools.combinations(styles.values(), 2):
        if tuple(a["color"]) == tuple(b["color"]):
            assert a["marker"] != b["marker"] and a["linestyle"] != b["linestyle"], (a, b)


#: the MNIST reference board's points (robust_auc, clean_acc, flagged): baseline, laplace and mc-dropout crowd
#: within a few pixels of one another
CROWDED = [("vdp-unscented", 0.4797, 0.967, False), ("stf-bnn", 0.4707, 0.9805, False), ("vdp", 0.4606, 0.9685, False),
           ("ensemble", 0.4469, 0.9845, False), ("laplace", 0.4023, 0.984, False), ("swag", 0.3427, 0.986, False),
           ("kap-2d", 0.339, 0.956, False), ("bbb", 0.4642, 0.979, True), ("ibp-bnn", 0.4534, 0.949, True),
           ("vd", 0.4478, 0.9685, True), ("kap", 0.4279, 0.9725, True), ("mc-dropout", 0.4174, 0.9815, True),
           ("baseline", 0.4015, 0.984, True), ("endp", 0.3717, 0.974, True), ("snn", 0.2342, 0.929, True),
           ("snn-noise", 0.2163, 0.8935, True)]


def test_the_tradeoff_names_cover_no_other_name_nor_point_and_stay_inside():
    from matplotlib.text import Text

    from benchmark.figures import tradeoff_figure

    rows = pd.DataFrame([(m, auc, clean, "zero-grad" if flag else np.nan) for m, auc, clean, flag in CROWDED],
                        columns=["model", "robust_auc", "clean_acc", "flags"])
    figure = tradeoff_figure(rows)
    figure.canvas.draw()  # places each name at its offset from its point
    ax, renderer = figure.axes[0], figure.canvas.get_renderer()
    names = {text.get_text(): Text.get_window_extent(text, renderer) for text in ax.texts}  # the text, not its line
    assert sorted(names) == sorted(rows.model)
    for (a, box_a), (b, box_b) in itertools.combinations(names.items(), 2):
        assert not box_a.overlaps(box_b), (a, b)
    points = dict(zip(rows.model, ax.transData.transform(rows[["robust_auc", "clean_acc"]].to_numpy()), strict=True))
    for name, box in names.items():
        assert not any(box.padded(2).contains(*point) for other, point in points.items() if other != name), name
        assert ax.get_window_extent(renderer).padded(1).contains(box.x0, box.y0), name
        assert ax.get_window_extent(renderer).padded(1).contains(box.x1, box.y1), name


def test_the_built_in_datasets_come_first_in_their_own_order(tmp_path):
    """MNIST, the main board, heads the index page; datasets of the user's own follow by name."""
    for dataset in ("zebra-digits", "fashion-mnist", "cifar10-jpeg", "mnist", "cifar10"):
        make_finished_run(tmp_path, "baseline", dataset=dataset)
    assert datasets_on_board(tmp_path) == ["mnist", "fashion-mnist", "cifar10", "cifar10-jpeg", "zebra-digits"]
    assert publish_all(tmp_path) == datasets_on_board(tmp_path)
    page = (tmp_path / "leaderboards" / "index.html").read_text()
    headings = [page.index(f"<h2>{name}</h2>") for name in datasets_on_board(tmp_path)]
    assert headings == sorted(headings)


def test_a_run_publishes_its_own_dataset_and_reads_no_run_of_another(tmp_path, monkeypatch):
    """A run ends by publishing what it changed: its dataset's board and report, and the index with every other
    dataset read from its published tables. Before, it rebuilt every dataset's board from its runs."""
    for dataset in ("fashion-mnist", "zebra-digits"):
        make_finished_run(tmp_path, "baseline", dataset=dataset, robust=0.25)
        publish(tmp_path, dataset)
    unpublished = make_finished_run(tmp_path, "model-b", dataset="zebra-digits", protocol="other")
    mine = make_finished_run(tmp_path, "model-a", dataset="mnist")
    read = []
    reader = RunResults.read.__func__
    monkeypatch.setattr(RunResults, "read", classmethod(lambda cls, run_dir: read.append(Path(run_dir)) or
                                                        reader(cls, run_dir)))
    publish(tmp_path, "mnist", "model-a")
    assert set(read) == {mine}  # the model's curves and report, nothing of the other datasets
    page = (tmp_path / "leaderboards" / "index.html").read_text()
    headings = [page.index(f"<h2>{name}</h2>") for name in ("mnist", "fashion-mnist", "zebra-digits")]
    assert headings == sorted(headings)
    zebra = page[headings[2]:]
    assert "baseline" in zebra and "model-b" not in zebra  # as published, without the run made since
    read.clear()
    publish_all(tmp_path)  # the explicit full rebuild: every run, for its curves and its report
    assert set(read) == {mine, unpublished, *(tmp_path / "runs").iterdir()}
    assert "model-b" in (tmp_path / "leaderboards" / "index.html").read_text()


def test_a_new_run_joins_the_published_board_instead_of_replacing_it(tmp_path):
    """A clone holds leaderboards/ but not the runs behind it: a run made there used to rebuild the board from
    its own row alone, deleting every published one."""
    described = make_finished_run(tmp_path, "baseline", robust=0.2)
    config = json.loads((described / "config.json").read_text())
    (described / "config.json").write_text(json.dumps({**config, "dataset_description": "lossy copy"}))
    make_finished_run(tmp_path, "model-a", robust=0.3, flags="=1+1")  # a cell a spreadsheet would run
    publish(tmp_path, "mnist")
    board = tmp_path / "leaderboards"
    report = board / "reports" / "mnist" / "quick" / "baseline" / "report.md"
    published_report = report.read_text()
    published_curves = pd.read_csv(board / "mnist-eps.csv")
    shutil.rmtree(tmp_path / "runs")  # the board without its runs, as a clone has it
    assert datasets_on_board(tmp_path) == ["mnist"]
    make_finished_run(tmp_path, "model-b", robust=0.4)
    publish(tmp_path, "mnist")
    rows = pd.read_csv(board / "mnist.csv")
    assert dict(zip(rows.model, rows.robust_acc, strict=True)) == {"baseline": 0.2, "model-a": 0.3, "model-b": 0.4}
    assert rows.set_index("model")["flags"]["model-a"] == "'=1+1"  # escaped once, not once per rebuild
    assert table(tmp_path, "mnist").set_index("model")["flags"]["model-a"] == "=1+1"
    eps = pd.read_csv(board / "mnist-eps.csv")
    pd.testing.assert_frame_equal(eps[eps.model != "model-b"].reset_index(drop=True), published_curves)
    assert set(pd.read_csv(board / "mnist-noise.csv").model) == {"baseline", "model-a", "model-b"}
    assert report.read_text() == published_report  # no run to render it from: the published report stays
    assert "> lossy copy" in (board / "mnist.md").read_text()  # the dataset's note, published with the table
    make_finished_run(tmp_path, "model-a", robust=0.9)  # the same model and protocol, run here
    publish(tmp_path, "mnist")
    rows = pd.read_csv(board / "mnist.csv")
    assert dict(zip(rows.model, rows.robust_acc, strict=True)) == {"baseline": 0.2, "model-a": 0.9, "model-b": 0.4}
