"""The names results are stored under (benchmark.names): condition ids stay exactly what published runs and
resumed runs name their files, and an eps is one eps however it was written down."""

import numpy as np
import pytest

from benchmark.evaluation import Condition
from benchmark.names import (
    METRIC_COLUMNS,
    condition_id,
    eps_key,
    eps_up_to,
    join_attacks,
    join_flags,
    metric_row,
    published_eps,
    same_eps,
    split_attacks,
    split_flags,
)

#: the sweeps of the built-in datasets (MNIST 0.3, Fashion-MNIST 0.1, CIFAR-10 8/255), as Evaluator.eps_sweep
#: computes them, and the noise sigmas
SWEEP = [f * eps for eps in (0.3, 0.1, 8 / 255) for f in (1 / 3, 2 / 3, 0.25, 0.5, 0.75, 1.0, 2.0)]
SIGMAS = [0.05, 0.1, 0.2, 0.3, 0.5]


def test_condition_ids_are_the_file_names_of_published_runs():
    assert [Condition("clean").id, Condition("diagnostics").id] == ["clean", "diagnostics"]
    assert Condition("noise", 0.05).id == "noise-0.05"
    assert [Condition("pgd", 0.3 * f).id for f in (1 / 3, 2 / 3, 1.0)] == ["pgd-0.1", "pgd-0.2", "pgd-0.3"]
    assert Condition("square", 8 / 255).id == "square-0.0313725"
    assert Condition("certify", 8 / 255 / 3).id == "certify-0.0104575"


@pytest.mark.parametrize("param", [None, *SWEEP, *SIGMAS])
def test_an_eps_read_back_from_its_key_names_the_same_condition(param):
    assert condition_id("pgd", param) == Condition("pgd", param).id
    if param is not None:
        assert Condition("pgd", param).id == f"pgd-{param:.6g}"  # the format every stored run was named with
        assert Condition("pgd", float(eps_key(param))).id == Condition("pgd", param).id


@pytest.mark.parametrize("eps", SWEEP)
def test_an_eps_is_the_same_after_a_csv_round_trip_or_the_published_rounding(eps):
    assert same_eps(float(repr(eps)), eps) and same_eps(published_eps(eps), eps)
    assert eps_up_to(published_eps(eps), eps) and eps_up_to(eps, published_eps(eps))
    assert not same_eps(eps * (1 + 1e-6), eps) and not eps_up_to(eps * (1 + 1e-6), eps)


def test_the_published_eps_drops_float_noise_but_keeps_the_digits_of_255ths():
    assert published_eps(0.3 / 3) == 0.1 and 0.3 / 3 != 0.1
    assert published_eps(8 / 255 / 3) == pytest.approx(8 / 255 / 3, rel=1e-12) != float(eps_key(8 / 255 / 3))


def test_eps_comparisons_work_on_arrays():
    sweep = np.array([0.1, 0.2, 0.30000000000000004, 0.5])
    assert same_eps(sweep, 0.3).tolist() == [False, False, True, False]
    assert eps_up_to(sweep, 0.3).tolist() == [True, True, True, False]


def test_the_attacks_and_flags_columns_split_as_they_were_joined():
    assert join_attacks(["fgsm", "pgd", "square"]) == "fgsm+pgd+square"
    assert split_attacks("fgsm+pgd+square") == ["fgsm", "pgd", "square"]
    assert join_flags(["zero-grad", "nan-grad"]) == "zero-grad;nan-grad"
    assert split_flags(join_flags(["zero-grad", "nan-grad"])) == ["zero-grad", "nan-grad"]
    assert join_flags([]) == ""
    for empty in ("", None, float("nan")):  # a row without flags reads back from the CSV as NaN
        assert split_flags(empty) == [] and split_attacks(empty) == []


def test_a_metric_row_has_the_metric_columns():
    row = metric_row("pgd", 0.1, "accuracy", np.float32(0.5))
    assert list(row) == METRIC_COLUMNS and row["value"] == 0.5 and type(row["value"]) is float
