"""``python -m benchmark``: the CLI, also the form torchrun launches (``torchrun ... -m benchmark run ...``)."""

from benchmark.cli import main

main()
