"""One text for a measured accuracy and its interval, wherever it is shown (boards, reports, claims)."""

import math

from benchmark.render import interval_text


def test_an_accuracy_reads_with_its_interval_alone_without_one_and_not_at_all_when_missing():
    assert interval_text(0.1644, 0.1321, 0.2013) == "0.164 [0.132, 0.201]"
    assert interval_text(0.1644, 0.1321, 0.2013, digits=4) == "0.1644 [0.1321, 0.2013]"
    assert interval_text(0.5, math.nan, None) == "0.500"
    assert interval_text(math.nan, 0.1, 0.2) == "" and interval_text(None, None, None) == ""
