"""Evaluation profiles: how much data, how many draws and how strong the attacks are.

``standard`` rows are the ones comparable with published results (every test image, the standard draws and
budgets); ``published`` is the profile the boards are published under, with AutoAttack at every eps on 1,000 test
images and the short training recipes; ``quick`` exists so the whole pipeline runs on a laptop CPU in minutes.
Every value here is recorded in the run's config.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from benchmark.attacks.plan import PlannedAttack, attack_plan
from benchmark.errors import BenchmarkError
from benchmark.names import eps_key, same_eps

NOISE_SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


@dataclass(frozen=True)
class Profile:
    """The data sizes, draws and attack plan of one evaluation profile, all recorded with every run."""

    name: str
    n_test: int | None  # None: the full test set (the first n_test images otherwise, in official order)
    n_train: int | None  # None: the full training set
    samples: int  # S: draws behind the deployed decision of a stochastic model
    eot: int  # K: draws per attack step (expectation over transformation)
    reevals: int  # R: fresh-randomness re-evaluations of the final adversarial points
    eps_fractions: tuple[float, ...]  # the eps sweep, as fractions of the dataset's eps
    attacks: tuple[PlannedAttack, ...]  # the attack plan (benchmark.attacks.plan)
    batch_size: int = 250
    noise_sigmas: tuple[float, ...] = NOISE_SIGMAS
    epochs: int | None = None  # overrides the plugin's recipe (tests and smoke runs only)
    training: str | None = None  # the profile whose recipe plugins train with (None: this one's own)

    @property
    def recipe(self) -> str:
        """What the plugins' training recipes are told (``Task.profile``): ``quick`` gets each plugin's short
        recipe, any other name its full one."""
        return self.training or self.name

    def as_dict(self) -> dict:
        """Every setting as recorded in a run; the plan as name -> attack class, its settings, draws and needs."""
        settings = {key: value for key, value in asdict(self).items() if key != "attacks"}
        settings["attacks"] = {p.name: {"attack": type(p.attack).__name__, **asdict(p.attack), "draws": p.draws,
                                        "needs": p.needs} for p in self.attacks}
        return settings

    def protocol(self, eps: float, dataset_eps: float, given_weights: bool = False) -> str:
        """The protocol a run follows, which is its leaderboard row's identity: the profile's name, followed by
        every setting that differs from the named profile (``quick[eps=0.1, n_test=100]``), an eps other than
        the dataset's, and weights given rather than trained by the plugin's recipe. Rows are ranked only
        against rows of the same protocol."""
        base = PROFILES[self.name].as_dict() if self.name in PROFILES else {}
        changed = {key: _short(value) for key, value in self.as_dict().items()
                   if key != "name" and base.get(key, object()) != value}
        if not same_eps(eps, dataset_eps):
            changed["eps"] = eps_key(eps)
        if given_weights:
            changed["weights"] = "given"
        return self.name + (f"[{', '.join(f'{k}={v}' for k, v in sorted(changed.items()))}]" if changed else "")


def _short(value) -> str:
    """A setting as it reads in a protocol's name: scalars as they are, anything larger by a digest."""
    if value is None or isinstance(value, (int, float, str)):
        return f"{value:.6g}" if isinstance(value, float) else str(value)
    return "custom-" + hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


#: test images of a published board: the same first images for every plugin of a board, and enough that a 95%
#: interval of an accuracy is at most about +-3 points
PUBLISHED_TEST_IMAGES = 1000

PROFILES = {
    "quick": Profile("quick", n_test=500, n_train=None, samples=8, eot=4, reevals=3, eps_fractions=(1 / 3, 2 / 3, 1.0),
                     attacks=attack_plan(pgd_steps=20, pgd_restarts=1, square_queries=500, autoattack=False)),
    # the boards: quick's cheap attacks first, then AutoAttack at every eps on the examples still standing (the
    # standard version, or APGD-CE and APGD-DLR on the K-draw average for stochastic models), Square on K-draw
    # margins and transfer; the plugins' short training recipes, so a 2-core machine can train every plugin
    "published": Profile("published", n_test=PUBLISHED_TEST_IMAGES, n_train=None, samples=8, eot=8, reevals=3,
                         eps_fractions=(1 / 3, 2 / 3, 1.0),
                         attacks=attack_plan(pgd_steps=20, pgd_restarts=1, square_queries=1000, autoattack=True),
                         training="quick"),
    # Square's 5,000 queries per example are AutoAttack's standard budget
    "standard": Profile("standard", n_test=None, n_train=None, samples=32, eot=20, reevals=5,
                        eps_fractions=(0.25, 0.5, 0.75, 1.0),
                        attacks=attack_plan(pgd_steps=100, pgd_restarts=2, square_queries=5000, autoattack=True)),
}


def get_profile(name: str, **overrides) -> Profile:
    """A named profile with the command line's overrides applied (None: keep the profile's value)."""
    if name not in PROFILES:
        raise BenchmarkError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key, value in overrides.items():
        if isinstance(value, int) and value < 1:
            raise BenchmarkError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
    return replace(profile, **overrides)
