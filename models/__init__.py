"""Bundled model plugins. Importing this package registers every plugin module listed here."""

from models import baseline, endp, mc_dropout, ibp_bnn, vdp  # noqa: F401
