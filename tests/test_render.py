"""One text for a measured accuracy and its interval, and one for an eps, wherever they are shown (boards,
reports, claims); one renderer of blocks for the reports and the board pages, in Markdown and in HTML."""

import math

import pandas as pd

from benchmark.render import (
    Badges,
    Figures,
    Heading,
    Image,
    Interval,
    Quote,
    Table,
    eps_text,
    html_page,
    interval_text,
    markdown,
)


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


def _table() -> Table:
    flags = Badges((("zero-grad", 'fires "when" <x>'), ("other", "")))
    frame = pd.DataFrame({"model": ["<b>m</b>"], "robust_acc": [Interval(0.7551, 0.7349, 0.7751)],
                          "attacks": ["fgsm+pgd"], "flags": [flags]})
    return Table(frame, links=("reports/m/report.html",), sortable=True, on_demand=frozenset({"attacks"}))


def test_a_table_reads_the_same_in_markdown_and_shows_intervals_and_badges_in_html():
    table = _table()
    assert markdown([table]).splitlines()[2] == ("| [&lt;b&gt;m&lt;/b&gt;](reports/m/report.html) "
                                                 "| 0.755 \\[0.735, 0.775\\] | fgsm+pgd | zero-grad;other |")
    page = html_page("board", [table], wide=True)
    assert "<td class='num'>0.755<small class='interval'>[0.735, 0.775]</small></td>" in page
    assert "<span class='badge' title=\"fires &quot;when&quot; &lt;x&gt;\">zero-grad</span>" in page
    assert '<td><a href="reports/m/report.html">&lt;b&gt;m&lt;/b&gt;</a></td>' in page
    assert "<b>m" not in page and '<body class="wide">' in page and "function sortTable" in page


def test_columns_on_demand_are_collapsed_in_html_until_asked_for():
    page = html_page("board", [_table()])
    assert "<caption><label><input type='checkbox'> show all 4 columns</label></caption>" in page
    assert "<colgroup><col><col><col class='on-demand'><col></colgroup>" in page
    assert "<th onclick='sortTable(this)'>attacks</th>" in page  # still there, to sort by once shown


def test_a_page_without_sortable_tables_has_no_script_and_a_text_column():
    page = html_page("report", [Heading("r", 1), Quote("a <i>quote</i>"), Table(pd.DataFrame({"a": ["x", "1.5"]}))])
    assert "<script" not in page and "<body>" in page and "<caption>" not in page
    assert "<blockquote>a &lt;i&gt;quote&lt;/i&gt;</blockquote>" in page
    assert "<td>x</td></tr><tr><td class='num'>1.5</td>" in page
    assert markdown([Quote("a | b")]) == "> a \\| b\n"


def test_figures_sit_side_by_side_linked_or_inlined(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    figures = Figures((Image("a.png", "first"), Image("b.png", "second", wide=True)))
    assert markdown([figures]) == "![first](a.png)\n![second](b.png)\n"
    linked = html_page("board", [figures])
    assert ('<div class=\'figures\'><figure><img src="a.png" alt="first"></figure>'
            '<figure class="wide"><img src="b.png" alt="second"></figure></div>') in linked
    inlined = html_page("report", [Image("a.png", "first")], image_dir=tmp_path)
    assert '<p><img src="data:image/png;base64,iVBORw==" alt="first"></p>' in inlined
