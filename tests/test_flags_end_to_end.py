"""Each attack-based flag fires end to end: a real trained model, a real run, and an attack plan in which
one attack is built to miss what its comparison finds (an attack that returns the clean input), so the
evidence has to travel through evaluation, metrics.csv and diagnostics to the leaderboard row.
The one-flag-per-pair checks are the point: the opposite flag of a pair must stay quiet."""

from dataclasses import replace

import pytest

from benchmark.attacks.pgd import PGD
from benchmark.attacks.plan import MAIN, MARGIN, MORE_DRAWS, MORE_STEPS, TARGETED, attack_plan
from benchmark.attacks.square import Square
from benchmark.attacks.transfer import Transfer
from benchmark.profiles import PROFILES
from benchmark.runner import RunRequest, run

pytestmark = pytest.mark.slow  # end to end: runs with --slow (CI), not in the quick loop

SETTINGS = dict(dataset="mnist-5k", n_train=1500, n_test=40, epochs=2, device="cpu", profile="quick")
#: returns the clean input: an attack that finds nothing
BLIND = PGD(steps=1, step_size=0.0, random_start=False)
STRONG = PGD(steps=20)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """One output directory, so each model is trained once for all the plans."""
    return tmp_path_factory.mktemp("flags")


def flags_with(out, monkeypatch, model: str, **attacks) -> set[str]:
    """The flags of a quick run of ``model`` whose plan has the named attacks replaced."""
    plan = tuple(replace(p, attack=attacks.get(p.name, p.attack)) for p in
                 attack_plan(pgd_steps=20, pgd_restarts=1, square_queries=300, autoattack=False))
    monkeypatch.setitem(PROFILES, "quick", replace(PROFILES["quick"], attacks=plan))
    row = run(RunRequest(model=model, out=out, **SETTINGS))
    return set(filter(None, row["flags"].split(";")))


def test_more_steps_helps_model_fires_when_the_longer_attack_breaks_less(out, monkeypatch):
    flags = flags_with(out, monkeypatch, "baseline", **{MORE_STEPS: BLIND})
    assert "more-steps-helps-model" in flags and "short-attack-not-converged" not in flags, flags


def test_short_attack_not_converged_fires_when_the_longer_attack_breaks_more(out, monkeypatch):
    flags = flags_with(out, monkeypatch, "baseline", **{MAIN: BLIND})
    assert "short-attack-not-converged" in flags and "more-steps-helps-model" not in flags, flags


def test_eot_not_converged_fires_when_more_draws_change_the_result(out, monkeypatch):
    flags = flags_with(out, monkeypatch, "mc-dropout", **{MORE_DRAWS: BLIND})
    assert "eot-not-converged" in flags, flags


def test_blackbox_beats_whitebox_fires_when_only_the_black_box_attack_breaks(out, monkeypatch):
    blind = {name: BLIND for name in ("fgsm", MAIN, MORE_STEPS, MARGIN, TARGETED)}
    flags = flags_with(out, monkeypatch, "baseline", **blind, square=Square(queries=300))
    assert "blackbox-beats-whitebox" in flags, flags


def test_eps_no_collapse_fires_when_nothing_reaches_the_model_even_at_the_large_eps(out, monkeypatch):
    """The large eps reads cumulatively (what any attack broke at a smaller eps stays broken), so the flag fires
    when every attack misses, as on a model whose gradients and queries both mislead."""
    blind = {name: BLIND for name in ("fgsm", MAIN, MORE_STEPS, MARGIN, TARGETED, "square")}
    assert "eps-no-collapse" in flags_with(out, monkeypatch, "baseline", **blind)


def test_no_attack_flag_fires_when_every_attack_does_its_job(out, monkeypatch):
    flags = flags_with(out, monkeypatch, "baseline", **{MAIN: STRONG}, transfer=Transfer(steps=20))
    assert not flags & {"more-steps-helps-model", "short-attack-not-converged", "eps-no-collapse",
                        "blackbox-beats-whitebox"}, flags
