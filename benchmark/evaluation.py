"""Evaluation conditions: clean data, the Gaussian noise sweep, attacks at each epsilon, diagnostics.

Each condition is computed independently from the trained network, batch by batch, each batch seeded
from the run seed, the condition's id and the batch index: a resumed run recomputes exactly what an
uninterrupted one would have, and a run sharded over torchrun processes (``benchmark.distributed``)
exactly what one process would have.
Stochastic models are judged by their deployed rule over S draws, attacked with K-draw EOT, and their
final adversarial points re-evaluated R times with fresh randomness, and 2R times more on draws of their own that
choose the one point per example scoring judges and decide the cascade (docs/protocol.md).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.attacks import Attack
from benchmark.attacks.bpda import BPDA
from benchmark.attacks.doubled import Doubled
from benchmark.attacks.plan import DOUBLED, MAIN, NOT_APPLICABLE
from benchmark.data import to_float
from benchmark.data.ood import OutOfDistribution
from benchmark.distributed import World
from benchmark.errors import BenchmarkError, HarnessBug, PluginOutputError
from benchmark.metrics import auroc, classification_metrics, mean_interval, selection_score
from benchmark.names import (
    ADAPTIVE,
    BINARIZATION,
    CERTIFY,
    CLEAN,
    DIAGNOSTICS,
    NOISE,
    OOD,
    adaptive_condition,
    condition_id,
    metric_row,
    same_eps,
)
from benchmark.plugin import EXACT_GRADIENT
from benchmark.predictive import Predictor
from benchmark.profiles import Profile
from benchmark.progress import counting_passes, progress_bar
from benchmark.uncertainty import ENTROPY, SCORES_BY_KIND, Prediction, predict


@dataclass(frozen=True)
class Condition:
    """One evaluation condition; its ``id`` names its stored results and seeds its batches."""

    name: str  # clean | noise | diagnostics | certify | an attack's name in Evaluator.attacks (benchmark.names)
    param: float | None = None  # sigma for noise, eps for attacks and certify

    @property
    def id(self) -> str:
        return condition_id(self.name, self.param)


@dataclass(frozen=True)
class AttackRun:
    """An attack as the protocol runs it: with how many EOT draws, and what it is there to check."""

    attack: Attack
    draws: int
    purpose: str


def batch_seed(seed: int, condition: Condition, batch: int) -> int:
    """The seed of one batch of one condition, fixed by (run seed, condition id, batch index) alone, so a
    resumed or sharded run draws exactly the randomness of an uninterrupted single-process one."""
    return stream_seed(seed, f"{condition.id}/{batch}")


def stream_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose within a batch (the input noise, the re-evaluations), derived from the batch's seed
    so that it neither repeats the stream the model's own draws take nor depends on what an attack drew."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{purpose}".encode()).digest()[:4], "little")


def large_eps(input_shape: tuple[int, int, int], eps: float) -> float:
    """The budget at which every model must collapse: 0.5 on MNIST-scale images, 64/255 on colour images;
    where that is not above the run's eps, twice the eps, capped at 1 (where any image can become any other)."""
    default = 0.5 if input_shape[0] == 1 else 64 / 255
    return default if default > eps else min(1.0, 2 * eps)


class Evaluator:
    """Runs the conditions of one profile on one trained predictor and test set.

    ``load`` returns the stored arrays of a finished condition (Square runs only on the examples the
    white-box attacks left standing). ``surrogate`` is a deterministic predictor for the transfer attack.
    ``world`` shards the batches over torchrun processes; every rank gets the gathered results.
    ``gradient_variants`` are the network's other backward passes (``ModelPlugin.gradient_variants``): a plan
    line that needs them runs once through each, and the diagnostics measure the one named ``EXACT_GRADIENT``.
    """

    def __init__(self, predictor: Predictor, x: torch.Tensor, y: torch.Tensor, profile: Profile,
                 eps: float, device: torch.device, seed: int, *,
                 surrogate: tuple[str, Predictor] | None = None,
                 load: Callable[[str], dict[str, np.ndarray]] | None = None, world: World = World(),
                 bounds: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
                 gradient_variants: dict[str, Callable] | None = None, ood: OutOfDistribution | None = None):
        self.predictor = predictor
        self.x, self.y = x, y
        self.profile = profile
        self.eps = eps
        self.device = device
        self.seed = seed
        self.load = load
        self.world = world
        self.bounds = bounds  # the plugin's interval_logits (one posterior draw per call): enables `certify`
        self.ood = ood  # another dataset's test images (benchmark.data.ood): enables `ood`
        random = predictor.is_random
        self.samples = profile.samples if random else 1
        self.eot = profile.eot if random else 1
        self.reevals = profile.reevals if random else 1
        # evaluations of every point on draws of its own, which choose between points and stop the cascade: twice R,
        # so that noise alone rarely stops the search (a non-random model's one judged evaluation serves)
        self.selections = 2 * self.reevals if random else 1
        self.large_eps = large_eps(tuple(x.shape[1:]), eps)
        self.scores = SCORES_BY_KIND[predictor.kind]  # the uncertainty scores stored with every point
        classes = predictor.num_classes or int(y.max()) + 1
        variants = dict(gradient_variants or {})
        for name in variants:  # each names conditions and so files in the run directory
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name):
                raise BenchmarkError(f"gradient variant name {name!r}: use lower-case letters, digits, '.' and '-'")
        self.exact_gradient = variants.pop(EXACT_GRADIENT, None)  # measured by the diagnostics, not attacked through
        context = {"randomness": random, "likelihood": predictor.likelihood is not None,
                   "surrogate": surrogate is not None, "three-classes": classes >= 3, "four-classes": classes >= 4,
                   "gradient-variants": bool(variants)}
        self.attacks: dict[str, AttackRun] = {}
        self.not_applicable: dict[str, str] = {}  # plan lines this model does not get, and why
        for p in profile.attacks:
            if p.needs != "always" and not context[p.needs]:
                self.not_applicable[p.name] = NOT_APPLICABLE[p.needs]
                continue
            attack, draws = p.attack.for_run(seed, surrogate), p.draws_for(self.eot)
            if p.needs == "gradient-variants":  # one attack per backward pass, named after it
                for variant, switch in variants.items():
                    self.attacks[f"{p.name}-{variant}"] = AttackRun(BPDA(attack, variant, switch), draws, p.purpose)
            elif isinstance(attack, Doubled):  # the strongest attack this model gets, with its draws
                doubled = attack.bound_to({name: run.attack for name, run in self.attacks.items()})
                if doubled is not None:
                    self.attacks[p.name] = AttackRun(doubled, self.attacks[doubled.doubles].draws, p.purpose)
            else:
                self.attacks[p.name] = AttackRun(attack, draws, p.purpose)

    @property
    def bpda_attacks(self) -> list[str]:
        """The attacks that run through one of the network's other backward passes, in plan order."""
        return [name for name, run in self.attacks.items() if isinstance(run.attack, BPDA)]

    @property
    def eps_sweep(self) -> list[float]:
        return sorted({f * self.eps for f in self.profile.eps_fractions} | {self.eps, self.large_eps})

    def plan(self) -> list[Condition]:
        """Every condition in order. Each eps of the sweep, smallest first, gets the whole attack set, white-box
        attacks before the black-box ones that check them; the large eps, a collapse check, gets the main attack.
        Every attack runs only on the examples that survived what came before it (:meth:`survivors`). Last, the
        attacks' self-test at the dataset eps (``benchmark.binarization``), where some attack applies to it."""
        conditions = [Condition(CLEAN), Condition(DIAGNOSTICS)]
        conditions += [Condition(NOISE, s) for s in self.profile.noise_sigmas if s > 0]
        conditions += [Condition(OOD)] if self.ood is not None else []
        ordered = sorted((name for name in self.attacks if name != DOUBLED),
                         key=lambda name: not self.attacks[name].attack.white_box)
        for eps in self.eps_sweep:
            conditions += [Condition(name, eps) for name in ([MAIN] if eps == self.large_eps else ordered)]
            if eps == self.eps and DOUBLED in self.attacks:  # the convergence check, after every attack
                conditions.append(Condition(DOUBLED, eps))
            if eps != self.large_eps and self.attacks:  # the detectors, on the points every attack left
                conditions += [Condition(adaptive_condition(score), eps) for score in self.scores]
        if self.bounds is not None:
            conditions += [Condition(CERTIFY, e) for e in self.eps_sweep if e != self.large_eps]
        from benchmark.binarization import binary_attacks  # it builds on this module
        return conditions + ([Condition(BINARIZATION, self.eps)] if binary_attacks(self)[0] else [])

    def attack_settings(self) -> dict:
        return {name: {**run.attack.settings(self.predictor), "eot_draws": run.draws, "purpose": run.purpose}
                for name, run in self.attacks.items()}

    def run(self, condition: Condition,
            clean_entropy: np.ndarray | None = None) -> tuple[list[dict], dict[str, np.ndarray]]:
        if condition.name in (CLEAN, NOISE):
            return self._predictive(condition, clean_entropy)
        if condition.name == DIAGNOSTICS:
            from benchmark.diagnostics import run_diagnostics  # the flags' module builds on this one
            return run_diagnostics(self)
        if condition.name == CERTIFY:
            from benchmark.certification import run_certify  # it builds on this module
            return run_certify(self, condition)
        if condition.name == OOD:
            return self._ood()
        if condition.name.startswith(ADAPTIVE + "-"):
            from benchmark.adaptive import run_adaptive  # it builds on this module
            return run_adaptive(self, condition)
        if condition.name == BINARIZATION:
            from benchmark.binarization import run_test  # it builds on this module
            return run_test(self, condition)
        return self._attack(condition)

    def _batches(self, condition: Condition, index: np.ndarray | None = None,
                 inputs: tuple[torch.Tensor, torch.Tensor] | None = None):
        """(batch index, seed, inputs, labels) of this rank's batches of the test set (or of ``inputs``); the global
        RNG is seeded per batch."""
        x, y = inputs or (self.x, self.y)
        x, y = (x, y) if index is None else (x[index], y[index])
        n, bs = x.shape[0], self.profile.batch_size
        mine = [b for b in range(-(-n // bs)) if self.world.owns(b)]
        with progress_bar() as bar:
            job = bar.add_task(condition.id, total=sum(min(bs, n - b * bs) for b in mine))
            with counting_passes(bar, job):  # the bar moves per batch; the count of network passes within it
                for b in mine:
                    seed = batch_seed(self.seed, condition, b)
                    torch.manual_seed(seed)
                    sl = slice(b * bs, (b + 1) * bs)
                    yield b, seed, to_float(x[sl].to(self.device)), y[sl].to(self.device)
                    bar.update(job, advance=min(bs, n - b * bs))

    def _map(self, condition: Condition, fn: Callable, index: np.ndarray | None = None,
             inputs: tuple[torch.Tensor, torch.Tensor] | None = None) -> list:
        """``fn(seed, inputs, labels)`` on this rank's batches; every batch's result, in order, on every rank.

        Anything the plugin's network raises becomes a :class:`PluginOutputError` naming the condition.
        """
        mine, error = {}, None
        try:
            for b, seed, xb, yb in self._batches(condition, index, inputs):
                mine[b] = fn(seed, xb, yb)
        except (torch.OutOfMemoryError, BenchmarkError, HarnessBug):
            raise
        except Exception as exc:  # the plugin's code runs inside: report it, let the run go on
            error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PluginOutputError) else str(exc)
        return self.world.gather(mine, error)

    def _predictive(self, condition: Condition, clean_entropy: np.ndarray | None):
        sigma = condition.param or 0.0

        def batch_probs(seed, xb, yb):
            if sigma > 0:
                generator = torch.Generator().manual_seed(stream_seed(seed, "input-noise"))
                noise = torch.randn(xb.shape, generator=generator).to(xb.device)
                xb = (xb + sigma * noise).clamp(0, 1)
            prediction = self._predict(xb)
            p = prediction.probs.float()
            scores = {name: score.cpu() for name, score in prediction.scores.items()}
            if condition.name != CLEAN:
                return p.cpu(), scores, None
            # the clean point is a candidate of the one-point worst case (benchmark.metrics.strongest_point)
            return p.cpu(), scores, self._selection_scores(xb, yb, seed, [p])

        batches = self._map(condition, batch_probs)
        p = torch.cat([probs for probs, _, _ in batches])
        y = self.y.cpu()
        metrics = classification_metrics(p, y)
        rows = [metric_row(condition.name, condition.param, k, v) for k, v in metrics.items()]
        arrays = {"probs": p.numpy(), "correct": (p.argmax(1) == y).numpy()[None, :]}
        arrays.update({name: torch.cat([scores[name] for _, scores, _ in batches]).numpy() for name in self.scores})
        if condition.name == NOISE and clean_entropy is not None:  # None: the clean condition failed
            rows.append(metric_row(NOISE, sigma, "auroc", auroc(torch.as_tensor(clean_entropy),
                                                                torch.as_tensor(arrays[ENTROPY]))))
        if condition.name == CLEAN:
            arrays["selection"] = torch.cat([score for _, _, score in batches], dim=1).numpy()
        return rows, arrays

    def _predict(self, x: torch.Tensor) -> Prediction:
        """The deployed predictive of ``x`` over S draws, with its uncertainty scores (``benchmark.uncertainty``)."""
        with torch.no_grad():
            return predict(self.predictor, x, self.samples)

    def _ood(self):
        """The uncertainty scores of another dataset's test images (their labels mean nothing here)."""
        inputs = (self.ood.x, torch.zeros(len(self.ood.x), dtype=torch.long))
        batches = self._map(Condition(OOD), lambda _, xb, yb: {name: score.cpu() for name, score in
                                                               self._predict(xb).scores.items()}, inputs=inputs)
        arrays = {name: torch.cat([scores[name] for scores in batches]).numpy() for name in self.scores}
        return [metric_row(OOD, None, "images", len(self.ood.x))], arrays

    def survivors(self, condition: Condition) -> np.ndarray:
        """Examples that survived, in some selection evaluation, the clean rule and every attack before ``condition``
        in the cascade: every attack at a smaller eps (its ball lies inside this one, so a point broken there is
        broken here) and, for a black-box attack, the white-box attacks at its own eps (for the convergence check,
        every attack at its own eps). The others were broken in
        every selection evaluation already and are not attacked again. The selection evaluations, not the judged
        ones, decide, so that which points exist never depends on the draws they are judged with
        (:func:`benchmark.metrics.strongest_point`). ``load`` returns None for a condition that failed: it removes
        no example. Without ``load`` (an attack run on its own, as the benchmarks do) nothing is known to be
        broken, and every example is attacked."""
        if self.load is None:
            return np.ones(len(self.y), dtype=bool)
        clean = self.load(condition_id(CLEAN))
        if clean is None:
            raise PluginOutputError("the clean condition failed, so no example is known to survive to be attacked")
        alive = self._survived(condition_id(CLEAN), clean)
        black = not self.attacks[condition.name].attack.white_box
        for earlier in self.plan():
            if earlier.name not in self.attacks or earlier == condition:
                continue
            same = same_eps(earlier.param, condition.param)
            if earlier.param < condition.param and not same or same and (
                    black and self.attacks[earlier.name].attack.white_box or condition.name == DOUBLED):
                arrays = self.load(earlier.id)
                if arrays is not None:
                    alive &= self._survived(earlier.id, arrays)
        return alive

    def _survived(self, condition: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """The examples a condition's points left correctly classified in some selection evaluation."""
        return (selection_of(arrays, self.predictor.is_random, condition) >= 0).any(0)

    def _selection_scores(self, x: torch.Tensor, y: torch.Tensor, seed: int,
                          judged: list[torch.Tensor]) -> torch.Tensor:
        """The selection scores [selections, B] of the points ``x`` (:func:`benchmark.metrics.selection_score`): a
        random model's on evaluations of a stream of their own, never its judged ones; a non-random model's on its
        judged evaluation, which any other would repeat."""
        chosen_on = self._evaluations(x, seed, "selection", self.selections) if self.predictor.is_random else judged
        return torch.stack([selection_score(p.float(), y) for p in chosen_on]).cpu()

    def _evaluations(self, x: torch.Tensor, seed: int, purpose: str, count: int) -> list[torch.Tensor]:
        """``count`` evaluations of the deployed rule (S draws each) at ``x``, on the batch's stream ``purpose``,
        whatever the attack drew or reseeded."""
        torch.manual_seed(stream_seed(seed, purpose))
        with torch.no_grad():
            return [self.predictor.probs(x, self.samples) for _ in range(count)]

    def _attack(self, condition: Condition):
        run = self.attacks[condition.name]
        eps = float(condition.param)
        index = np.flatnonzero(self.survivors(condition))

        def batch_outcomes(seed, xb, yb):
            x_adv = run.attack(self.predictor, xb, yb, eps, run.draws)  # within the threat model (Attack.__call__)
            return self._judge(x_adv, yb, seed)

        arrays = self._attack_arrays(index, self._map(condition, batch_outcomes, index))
        rows = accuracy_rows(condition.name, eps, arrays["correct"])
        return rows + [metric_row(condition.name, eps, "attacked", len(index))], arrays

    def _judge(self, x_adv: torch.Tensor, y: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        """The adversarial points of one batch, judged: their correctness [R, B] and uncertainty scores [R, B] in the
        R re-evaluations, the mean of those evaluations' probabilities [B, C], and their selection scores."""
        torch.manual_seed(stream_seed(seed, "re-evaluation"))
        judged = [self._predict(x_adv) for _ in range(self.reevals)]
        probs = [j.probs.float() for j in judged]
        out = {"correct": torch.stack([p.argmax(1) == y for p in probs]), "probs": torch.stack(probs).mean(0),
               "selection": self._selection_scores(x_adv, y, seed, probs)}
        out.update({name: torch.stack([j.scores[name] for j in judged]) for name in self.scores})
        return {key: value.cpu() for key, value in out.items()}

    def _attack_arrays(self, index: np.ndarray, outcomes: list[dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
        """The arrays of an attack condition from its batches' :meth:`_judge` outcomes on the examples
        ``index``. The examples not attacked were broken in every selection evaluation already: they count as
        broken, so every attack's row reads cumulatively (as AutoAttack reports its stages); this attack made no
        point for them (NaN), and the robust accuracy counts them broken (``benchmark.worst_case``)."""
        n, classes = len(self.y), self.predictor.num_classes or int(self.y.max()) + 1
        arrays = {"correct": np.zeros((self.reevals, n), dtype=bool),
                  "selection": np.full((self.selections, n), np.nan, dtype=np.float32),
                  "probs": np.full((n, classes), np.nan, dtype=np.float32),
                  **{name: np.full((self.reevals, n), np.nan, dtype=np.float32) for name in self.scores}}
        if len(index):
            for key, array in arrays.items():
                joined = torch.cat([outcome[key] for outcome in outcomes], dim=0 if key == "probs" else 1).numpy()
                array[(index,) if key == "probs" else (slice(None), index)] = joined
        return arrays


def attack_conditions(evaluator: Evaluator) -> list[tuple[str, float]]:
    """(id, eps) of every attack condition of the evaluator's plan, the candidates of the worst case
    (``benchmark.worst_case``)."""
    return [(c.id, c.param) for c in evaluator.plan() if c.name in evaluator.attacks]


def selection_of(arrays: dict[str, np.ndarray], random: bool, condition: str) -> np.ndarray:
    """A clean or attack condition's selection scores [evaluations, N] (:func:`benchmark.metrics.selection_score`). A
    condition stored before they were kept has none: a non-random model's judged evaluation is its selection one,
    and its correctness (0 right, -1 wrong) gives the same cascade and the same worst case; a random model's
    cannot be recovered, and its run must be recomputed."""
    if "selection" in arrays:
        return arrays["selection"]
    if not random:
        return arrays["correct"].astype(np.float32) - 1
    raise BenchmarkError(f"condition {condition} was stored before the harness kept the selection evaluations a "
                         "random model's robust accuracy is chosen on; delete the run's conditions/ folder and run "
                         "the same command again (the trained weights are reused)")


def accuracy_rows(name: str, param: float, correct: np.ndarray) -> list[dict]:
    """Rows for a [R, N] correctness array: mean over the R re-evaluations, its 95% interval, worst case."""
    per_run = correct.mean(axis=1)
    mean, low, high = mean_interval(list(per_run), correct.shape[1])
    worst = correct.all(axis=0).mean()
    return [metric_row(name, param, "accuracy", mean), metric_row(name, param, "accuracy_ci_low", low),
            metric_row(name, param, "accuracy_ci_high", high), metric_row(name, param, "accuracy_worst", worst)]
