"""The speed scripts under benchmarks/ run end to end at tiny sizes on the CPU and print their tables.

No timings are asserted (the figures are the scripts' output, see benchmarks/README.md): these only check
that each script's main runs, prints a table and returns rows, and that the reference ResNet-18 loads the
pyautoattack checkpoint strictly and classifies cifar10-jpeg images sensibly.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATASETS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def _main(name: str):
    return importlib.import_module(name).main


def _printed_table(capsys) -> str:
    out = capsys.readouterr().out
    assert "┏" in out and "┃" in out, out  # a rich table
    return out


def test_attack_speed_runs(capsys):
    # seed 1: the tiny random net gets all 4 random images wrong, so AutoAttack's later stages (Square's 5,000
    # queries on every image left standing) have nothing to attack and the test stays fast
    rows = _main("attack_speed")(["--device", "cpu", "--model", "tiny", "--dataset", "random", "--n", "4",
                                  "--steps", "2", "--eps", "8", "--seed", "1"])
    out = _printed_table(capsys)
    methods = {r["method"] for r in rows}
    assert methods == {"pgd", "torchattacks-pgd", "apgd-ce", "pyautoattack-apgd-ce", "autoattack", "pyautoattack"}
    assert all(r["seconds"] > 0 and 0 <= r["robust_acc"] <= 1 for r in rows)
    assert "speed-up" in out


def test_limit_runs(capsys):
    rows = _main("limit")(["--device", "cpu", "--model", "tiny", "--dataset", "random", "--n", "4", "--steps", "2",
                           "--iters", "2"])
    _printed_table(capsys)
    assert rows[0]["fraction_of_floor"] == 1.0 and rows[-1]["method"].startswith("harness PGD")


def test_eot_speed_runs(capsys):
    rows = _main("eot_speed")(["--device", "cpu", "--network", "tiny-dropout", "--dataset", "random", "--n", "4",
                               "--eot", "2", "--samples", "2", "--iters", "2"])
    _printed_table(capsys)
    assert len(rows) == 2 and all(r["seconds"] > 0 for r in rows)


def test_eot_speed_restores_pyautoattack():
    import pyautoattack.autopgd_base as apgd

    original = apgd.APGDAttack
    with _main("eot_speed").__globals__["apgd_iterations"](3):
        assert apgd.APGDAttack is not original
    assert apgd.APGDAttack is original


def test_scaling_runs(capsys):
    out = _main("scaling")(["--device", "cpu", "--n", "2", "--batch-size", "2", "--samples", "1", "--eot", "1",
                            "--steps", "1", "--n-list", "--samples-list", "2", "--eot-list", "--batch-list",
                            "--moment-plugins", "baseline", "vdp", "--iters", "1"])
    _printed_table(capsys)
    assert [r["varied"] for r in out["sweep"]] == ["base", "samples"]
    assert all(isinstance(r["pgd_s"], float) for r in out["sweep"])
    assert [r["plugin"] for r in out["plugins"]] == ["baseline", "vdp"]


@pytest.mark.skipif(importlib.util.find_spec("pyautoattack") is None, reason="pyautoattack not installed")
def test_reference_checkpoint_is_a_plain_state_dict_and_loads_strictly():
    common = importlib.import_module("common")
    state = torch.load(common.reference_checkpoint(), map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    model = common.ResNet18()
    model.load_state_dict(state, strict=True)  # raises on any missing or unexpected name


@pytest.mark.skipif(not (SHARED_DATASETS / "cifar10-jpeg" / "dataset.json").is_file(), reason="no cifar10-jpeg copy")
def test_reference_model_classifies_cifar10_jpeg():
    common = importlib.import_module("common")
    torch.set_num_threads(1)
    model = common.load_model("resnet18", torch.device("cpu"))
    images = common.load_images("cifar10-jpeg", str(SHARED_DATASETS), 32, torch.device("cpu"))
    assert "not the official CIFAR-10" in images.label
    assert common.accuracy(model, images.x, images.y, 32) > 0.5
