"""Evaluation profiles: how much data, how many draws and how strong the attacks are.

Only ``standard`` rows are comparable across models; ``quick`` exists so the whole pipeline runs on a
laptop CPU in minutes. Every value here is recorded in the run's config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from benchmark.errors import BenchmarkError

NOISE_SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


@dataclass(frozen=True)
class Profile:
    name: str
    n_test: int | None  # None: the full test set (the first n_test images otherwise, in official order)
    n_train: int | None  # None: the full training set
    samples: int  # S: draws behind the deployed decision of a stochastic model
    eot: int  # K: draws per attack step (expectation over transformation)
    reevals: int  # R: fresh-randomness re-evaluations of the final adversarial points
    pgd_steps: int
    pgd_restarts: int
    eps_fractions: tuple[float, ...]  # the eps sweep, as fractions of the dataset's eps
    autoattack: bool
    square_queries: int = 5000  # Square's query budget per example (AutoAttack's standard value)
    batch_size: int = 250
    noise_sigmas: tuple[float, ...] = NOISE_SIGMAS
    epochs: int | None = None  # overrides the plugin's recipe (tests and smoke runs only)

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "quick": Profile("quick", n_test=500, n_train=None, samples=8, eot=4, reevals=3,
                     pgd_steps=20, pgd_restarts=1, eps_fractions=(1 / 3, 2 / 3, 1.0), autoattack=False,
                     square_queries=500),
    "standard": Profile("standard", n_test=None, n_train=None, samples=32, eot=20, reevals=5,
                        pgd_steps=100, pgd_restarts=2, eps_fractions=(0.25, 0.5, 0.75, 1.0), autoattack=True),
}


def get_profile(name: str, **overrides) -> Profile:
    if name not in PROFILES:
        raise BenchmarkError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key, value in overrides.items():
        if isinstance(value, int) and value < 1:
            raise BenchmarkError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
    return replace(profile, **overrides)
