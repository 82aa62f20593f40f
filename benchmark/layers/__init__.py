"""Building blocks that plugins assemble networks from (after timm's ``layers``), apart from the plugins.

One module per family: ``normalize`` and ``dropout`` (single layers), ``cnn`` (the baseline
architectures), ``moments`` (Gaussian moment propagation), ``variational`` (mean-field weights with
local reparameterization) and ``spiking`` (leaky integrate-and-fire neurons). A layer that interval
bound propagation must handle carries its own ``interval_bounds`` rule (``benchmark.bounds``).
"""

from benchmark.layers.cnn import make_cnn
from benchmark.layers.dropout import MCDropout
from benchmark.layers.normalize import Normalize

__all__ = ["MCDropout", "Normalize", "make_cnn"]
