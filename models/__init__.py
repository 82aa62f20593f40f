"""Bundled model plugins. Importing this package registers every plugin module listed here."""

from models import baseline, endp, mc_dropout, ibp_bnn, vdp, kap, snn, snn_noise, ensemble, swag, laplace_approx, bbb, vd, stf_bnn  # noqa: F401
