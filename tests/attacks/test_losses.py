import pytest
import torch
from pyautoattack.autopgd_base import APGDAttack

from benchmark.attacks import PGD
from benchmark.attacks.losses import cross_entropy, dlr
from benchmark.predictive import Predictor


def test_dlr_matches_autoattacks_reference_implementation():
    torch.manual_seed(0)
    logits, y = torch.randn(64, 10) * 3, torch.randint(0, 10, (64,))
    reference = APGDAttack.dlr_loss(None, logits, y)
    torch.testing.assert_close(dlr(logits, y), reference)


def test_dlr_is_scale_and_shift_free_where_cross_entropy_saturates():
    torch.manual_seed(1)
    logits, y = torch.randn(32, 10), torch.randint(0, 10, (32,))
    torch.testing.assert_close(dlr(100 * logits + 7, y), dlr(logits, y))
    confident = torch.log_softmax(1000 * logits, -1)  # an overconfident model's log predictive
    correct = confident.argmax(-1) == y
    assert (cross_entropy(confident, y)[correct] < 1e-6).all()  # no signal left in the cross-entropy
    assert (dlr(confident, y)[correct] < -0.01).all()  # still a graded margin


def test_dlr_is_positive_exactly_where_the_point_is_misclassified():
    torch.manual_seed(2)
    logits, y = torch.randn(200, 5), torch.randint(0, 5, (200,))
    assert ((dlr(logits, y) > 0) == (logits.argmax(-1) != y)).all()
    with pytest.raises(ValueError, match="at least 3 classes"):
        dlr(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))


class _Scale(torch.nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return self.factor * x


def test_pgd_on_dlr_breaks_an_overconfident_model_where_cross_entropy_stalls(trained_mlp, mnist_sample):
    """Logits scaled by 1e4 saturate the cross-entropy (zero gradient at confident points); DLR is scale-free."""
    _, _, x, y = mnist_sample
    predictor = Predictor(torch.nn.Sequential(trained_mlp, _Scale(1e4)), "deterministic")

    def accuracy(x_adv):
        return (predictor.probs(x_adv).argmax(1) == y).float().mean().item()

    torch.manual_seed(0)
    with_ce = accuracy(PGD(steps=20)(predictor, x, y, 0.1, 1))
    torch.manual_seed(0)
    with_dlr = accuracy(PGD(steps=20, objective="dlr")(predictor, x, y, 0.1, 1))
    assert with_dlr < with_ce - 0.3
