"""A leaderboard row's identity is its whole protocol: runs with overrides never replace or mix with the
profile's own rows (docs/architecture.md, "Leaderboard schema")."""

import pandas as pd
from fakes import make_finished_run

from benchmark.attacks.plan import attack_plan
from benchmark.leaderboard import protocols, publish, table
from benchmark.profiles import get_profile


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
    assert "## Protocol: quick" in first and "0.2000" in first and "0.9000" not in first
    assert "0.9000" in second and "0.2000" not in second and "model-b" not in second
    assert "(quick[eps=0.1] protocol)" in (board / "index.html").read_text()
    for protocol in ("quick", "quick_eps_0.1"):  # each protocol's report, neither overwriting the other
        assert (board / "reports" / "mnist" / protocol / "model-a" / "report.md").is_file()
