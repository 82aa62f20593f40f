"""The harness's own Square Attack: own generator, every example searched on K-draw averaged margins, each
example's best point returned, noisy lucky draws neither accepted for good nor mistaken for a broken point."""

import pytest
import torch
from torch import nn

from benchmark.attacks import Square
from benchmark.attacks.square import margin, p_schedule, window_side
from benchmark.predictive import Predictor

EPS = 0.1
PIXELS = 64  # 1 x 8 x 8 images


class Linear(nn.Module):
    """Two-class linear scores, plus (when random) Gaussian logit noise and rare 'lucky' draws that push the
    true class's logit far down, independently per row (as the contract asks of stochastic networks)."""

    def __init__(self, w, b, sigma=0.0, lucky=0.0):
        super().__init__()
        self.w, self.b, self.sigma, self.lucky = w, b, sigma, lucky

    def forward(self, x):
        z = x.flatten(1) @ self.w.T + self.b
        if self.sigma == 0 and self.lucky == 0:  # deterministic: leaves the global generator alone
            return z
        spike = (torch.rand(z.shape[0]) < self.lucky).float()
        return z + self.sigma * torch.randn_like(z) - 30.0 * torch.stack([spike, torch.zeros_like(spike)], 1)


class Counting(Predictor):
    """Records the rows and draws of every query."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def log_predictive(self, x, draws=1):
        self.calls.append((x.shape[0], draws))
        return super().log_predictive(x, draws)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def task():
    """50 images, label 0, and a model maker: ``clean_margin`` is the mean noise-free clean margin (one bias for
    all images, so the model works on any batch); ``drop`` is how much lower the noise-free margin of a point
    is than its clean image's."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, PIXELS, generator=g) * 0.5
    x = torch.rand(50, 1, 8, 8, generator=g) * 0.6 + 0.2
    y = torch.zeros(50, dtype=torch.long)
    direction = w[0] - w[1]

    def model(clean_margin, **noise):
        return Linear(w, torch.tensor([clean_margin - (x.flatten(1) @ direction).mean().item(), 0.0]), **noise)

    def drop(points):
        return (x - points).flatten(1) @ direction

    # the largest drop within the eps-ball (before clipping to [0, 1], which never binds here)
    return x, y, model, drop, EPS * direction.abs().sum().item()


def in_threat_model(x_adv, x):
    return (x_adv - x).abs().max().item() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_the_global_generator_is_neither_reseeded_nor_used_on_a_deterministic_model(task):
    x, y, model, _, _ = task
    predictor = Predictor(model(3.0), "deterministic")
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    Square(queries=50, seed=0)(predictor, x, y, EPS, 1)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_seed_fixes_the_result_and_another_seed_changes_it(task):
    x, y, model, _, _ = task
    predictor = Predictor(model(3.0), "deterministic")
    runs = [Square(queries=50, seed=seed)(predictor, x, y, EPS, 1) for seed in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    assert Square(queries=50).for_run(9, None).seed == 9


def test_a_robust_point_gets_a_lower_margin_within_the_ball_not_the_clean_input(task):
    """The clean margin (10) exceeds the largest drop in the ball: nothing breaks, yet every example gets
    back the lowest-margin point found, inside the ball and [0, 1]."""
    x, y, model, drop, max_drop = task
    assert max_drop < 10
    predictor = Predictor(model(10.0), "deterministic")
    x_adv = Square(queries=200, seed=0)(predictor, x, y, EPS, 1)
    assert in_threat_model(x_adv, x)
    gain = drop(x_adv)
    assert (gain > 0).all()
    assert gain.mean() > 0.8 * max_drop  # random search nearly finds the corner on a linear model


def test_a_broken_point_of_a_deterministic_model_is_returned_broken_and_stops_querying(task):
    x, y, model, _, max_drop = task
    predictor = Counting(model(0.3 * max_drop), "deterministic")
    x_adv = Square(queries=200, seed=0)(predictor, x, y, EPS, 1)
    queried = sum(rows for rows, _ in predictor.calls)
    assert in_threat_model(x_adv, x)
    assert (predictor.probs(x_adv).argmax(1) != y).all()
    assert queried < 0.5 * 200 * len(y)  # a negative margin is exact here: broken examples stop


def test_every_query_is_the_k_draw_average_and_the_budget_is_queries_per_example(task):
    x, y, model, _, _ = task
    deterministic = Counting(model(10.0), "deterministic")
    Square(queries=40, seed=0)(deterministic, x, y, EPS, 1)
    assert sum(rows for rows, _ in deterministic.calls) == 40 * len(y)  # robust: every candidate queried
    # noisy margins near zero: single checks often call a point broken, yet every example is searched
    # for the whole budget, and its current point re-evaluated alongside
    stochastic = Counting(model(0.5, sigma=2.0), "stochastic")
    Square(queries=40, seed=0)(stochastic, x, y, EPS, 3)
    assert {draws for _, draws in stochastic.calls} == {3}
    assert len(stochastic.calls) == 40
    assert all(rows >= len(y) for rows, _ in stochastic.calls[1:])
    assert sum(rows for rows, _ in stochastic.calls) > 40 * len(y)


def test_on_a_noisy_model_every_example_gets_a_searched_point_not_the_clean_input(task):
    """Gaussian logit noise, K = 4, the model robust: a last noisy check says "correct" for every example,
    which must not send the clean input back."""
    x, y, model, drop, max_drop = task
    torch.manual_seed(0)
    predictor = Predictor(model(10.0, sigma=0.5), "stochastic")
    x_adv = Square(queries=200, seed=0)(predictor, x, y, EPS, 4)
    assert in_threat_model(x_adv, x)
    assert (x_adv != x).flatten(1).any(1).all()
    gain = drop(x_adv)
    assert (gain > 0).float().mean() >= 0.9
    assert gain.mean() > 0.25 * max_drop


def test_a_lucky_draw_neither_freezes_the_search_nor_ends_it(task):
    """One draw in a hundred pushes the true class's logit down by 30 (K = 1). Kept as the bar to beat, a
    lucky evaluation would freeze its example; taken as proof of a broken point, it would end the search
    and return the clean input. Either way the margin would fall much less than without lucky draws."""
    x, y, model, drop, _ = task
    gains = {}
    for lucky in (0.0, 0.01):
        torch.manual_seed(0)
        predictor = Predictor(model(3.0, lucky=lucky), "stochastic")
        x_adv = Square(queries=300, seed=0)(predictor, x, y, EPS, 1)
        assert in_threat_model(x_adv, x)
        gains[lucky] = drop(x_adv).mean().item()
    assert gains[0.01] > 0.75 * gains[0.0], gains


def test_the_square_shrinks_on_the_papers_schedule_rescaled_to_the_budget():
    assert p_schedule(0.8, 0, 10_000) == 0.8
    assert p_schedule(0.8, 11, 10_000) == 0.4
    assert p_schedule(0.8, 9_000, 10_000) == pytest.approx(0.8 / 2 ** 9)
    assert p_schedule(0.8, 450, 500) == p_schedule(0.8, 9_000, 10_000)  # rescaled: 450/500 = 9,000/10,000
    assert window_side(0.8, 28, 28) == 25
    assert window_side(1e-6, 28, 28) == 1


def test_margin_is_true_log_probability_minus_the_best_other():
    log_pred = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]))
    expected = torch.log(torch.tensor([0.5 / 0.3, 0.1 / 0.6]))
    torch.testing.assert_close(margin(log_pred, torch.tensor([0, 0])), expected)
