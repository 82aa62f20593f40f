"""The verdict rule's statistics (benchmark.verdict): the effect's interval and p-value, Holm's step-down test, the
minimum gain and the clean cost."""

import pytest

from benchmark.verdict import MINIMUM_GAIN, Interval, cost, effect, holm, supporting


def test_effect_interval_and_p_from_the_two_intervals():
    mine, theirs = Interval(0.5, 0.46, 0.54), Interval(0.4, 0.37, 0.43)
    found = effect(mine, theirs, "eps 0.3")
    assert found.difference == pytest.approx(0.1)
    se = ((0.08 / 3.919927969) ** 2 + (0.06 / 3.919927969) ** 2) ** 0.5
    assert found.low == pytest.approx(0.1 - 1.959963984540054 * se)
    assert found.p == pytest.approx(0.5 * __import__("math").erfc(0.1 / se / 2 ** 0.5))
    assert effect(theirs, mine, "x").p > 0.99  # the other way round: no evidence of a gain


def test_holm_rejects_step_by_step():
    # sorted: 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05/1: all three
    assert holm([0.04, 0.01, 0.02]) == [True, True, True]
    # 0.03 > 0.05/2 stops the procedure: the larger ones are kept too, even 0.04 <= 0.05
    assert holm([0.01, 0.03, 0.04]) == [True, False, False]
    assert holm([0.02, 0.02, 0.02]) == [False, False, False]  # each alone significant, none after the correction


def test_support_needs_significance_and_the_minimum_gain():
    tight = Interval(0.015, 0.014, 0.016)
    zero = Interval(0.0, 0.0, 0.001)
    assert effect(tight, zero, "x").p < 1e-6 and not supporting([effect(tight, zero, "x")])
    big = Interval(MINIMUM_GAIN + 0.05, MINIMUM_GAIN + 0.04, MINIMUM_GAIN + 0.06)
    assert supporting([effect(big, zero, "x")])


def test_clean_cost_only_where_significant_and_large():
    assert cost(Interval(0.90, 0.88, 0.92), Interval(0.99, 0.98, 1.0)) == pytest.approx(0.09)
    assert cost(Interval(0.985, 0.97, 0.995), Interval(0.99, 0.98, 1.0)) is None
