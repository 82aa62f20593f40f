"""One text for a measured accuracy and its interval, and one for an eps, wherever they are shown (boards,
reports, claims)."""

import math

from benchmark.render import eps_text, interval_text


def test_an_accuracy_reads_with_its_interval_alone_without_one_and_not_at_all_when_missing():
    assert interval_text(0.1644, 0.1321, 0.2013) == "0.164 [0.132, 0.201]"
    assert interval_text(0.1644, 0.1321, 0.2013, digits=4) == "0.1644 [0.1321, 0.2013]"
    assert interval_text(0.5, math.nan, None) == "0.500"
    assert interval_text(math.nan, 0.1, 0.2) == "" and interval_text(None, None, None) == ""


def test_an_eps_reads_in_its_datasets_units():
    cifar = 8 / 255
    assert eps_text(cifar) == "8/255"
    assert [eps_text(f * cifar, cifar) for f in (1 / 3, 2 / 3, 1)] == ["2.67/255", "5.33/255", "8/255"]
    assert eps_text(64 / 255, cifar) == "64/255"  # the collapse check, above 0.1, still in 255ths
    fashion = 0.1
    # 0.1 * 2/3 is exactly 17/255, but Fashion-MNIST's budgets are not read in 255ths
    assert [eps_text(f * fashion, fashion) for f in (1 / 3, 2 / 3, 1)] == ["0.0333", "0.0667", "0.1"]
    assert [eps_text(e, 0.3) for e in (0.09999999999999999, 0.19999999999999998, 0.3, 0.5)] == ["0.1", "0.2", "0.3",
                                                                                                 "0.5"]
