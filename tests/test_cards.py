"""Leaderboard rows exported as RobustBench model-info cards, read back as RobustBench's own code reads them."""

import json

import pytest
from fakes import make_finished_run
from typer.testing import CliRunner

from benchmark.cards import TO_FILL, export_cards
from benchmark.cli import app
from benchmark.errors import BenchmarkError
from benchmark.robustbench_compat import import_robustbench

FIELDS = {"link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue", "architecture",
          "eps", "clean_acc", "autoattack_acc", "reported"}


def _board(tmp_path):
    for model, dataset in (("endp", "mnist"), ("mc-dropout", "mnist"), ("robustbench:Ding2020MMA", "cifar10")):
        run_dir = make_finished_run(tmp_path, model, dataset=dataset, robust=0.4567)
        summary = json.loads((run_dir / "summary.json").read_text())
        summary.update(clean_acc=0.9876, predictive="stochastic" if model == "mc-dropout" else "deterministic",
                       samples=8 if model == "mc-dropout" else 1, eps=8 / 255 if dataset == "cifar10" else 0.3,
                       robust_acc_ci_low=0.41, robust_acc_ci_high=0.5)
        (run_dir / "summary.json").write_text(json.dumps(summary))


def test_cards_carry_robustbenchs_fields_what_the_docstring_says_and_mark_the_rest(tmp_path):
    _board(tmp_path)
    result = CliRunner().invoke(app, ["export", "--format", "robustbench", "--out", str(tmp_path),
                                      "--to", str(tmp_path / "cards")])
    assert result.exit_code == 0, result.output
    info = tmp_path / "cards" / "model_info"
    endp = json.loads((info / "mnist" / "Linf" / "endp.json").read_text())
    assert FIELDS <= set(endp)
    assert (endp["clean_acc"], endp["autoattack_acc"], endp["eps"]) == ("98.76", "45.67", "0.3")
    assert endp["link"] == "https://arxiv.org/abs/2111.05953" and endp["venue"] == "MLSP 2020"  # from its docstring
    assert endp["authors"].startswith("Carannante") and endp["number_forward_passes"] == 1
    assert endp["reported"] == TO_FILL and "reported" in endp["fill_in"] and "link" not in endp["fill_in"]
    assert "AutoAttack not among them" in endp["footnote"]  # the quick protocol's worst case is not AutoAttack
    stochastic = json.loads((info / "mnist" / "Linf" / "mc-dropout.json").read_text())
    assert stochastic["number_forward_passes"] == 8  # S
    zoo = json.loads((info / "cifar10" / "Linf" / "Ding2020MMA.json").read_text())
    assert zoo["eps"] == "8/255" and zoo["additional_data"] is None and "additional_data" in zoo["fill_in"]


def test_robustbenchs_own_readers_accept_the_cards(tmp_path, monkeypatch, capsys):
    try:
        utils = import_robustbench("robustbench.utils")
    except BenchmarkError as missing:
        pytest.skip(str(missing))
    _board(tmp_path)
    export_cards(tmp_path, tmp_path)
    monkeypatch.chdir(tmp_path)  # RobustBench reads ./model_info
    # the zoo row, as RobustBench's leaderboard listing reads it (name, link, accuracies / 100, venue)
    utils.list_available_models("cifar10", "Linf")
    listing = capsys.readouterr().out
    assert "Ding2020MMA" in listing and "98.76%" in listing and "45.67%" in listing
    # every card, as the bibtex export reads them (name, authors, venue)
    entries, _ = utils.get_leaderboard_bibtex("cifar10", "Linf")
    assert len(entries) == 1
    # and the sort key of its HTML leaderboard: float(card[acc_field]) for the first field a card has
    acc_fields = utils.ACC_FIELDS[import_robustbench("robustbench.model_zoo.enums").ThreatModel.Linf]
    for path in (tmp_path / "model_info").rglob("*.json"):
        card = json.loads(path.read_text())
        assert 0 <= float(next(card[k] for k in acc_fields if k in card)) <= 100


def test_an_unknown_format_and_an_empty_board_are_refused(tmp_path):
    result = CliRunner().invoke(app, ["export", "--format", "csv", "--out", str(tmp_path)])
    assert "unknown export format 'csv'" in str(result.exception)
    with pytest.raises(BenchmarkError, match="no finished runs"):
        export_cards(tmp_path, tmp_path, "mnist")


def test_an_export_of_a_folder_without_runs_says_what_it_looked_for_and_where(tmp_path):
    result = CliRunner().invoke(app, ["export", "--format", "robustbench", "--out", str(tmp_path)])
    message = " ".join(str(result.exception).split())
    assert isinstance(result.exception, BenchmarkError)
    assert f"no finished runs under {tmp_path / 'runs'}" in message
    assert f"no published tables under {tmp_path / 'leaderboards'}" in message
