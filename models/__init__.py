"""The bundled model plugins, installed as ``benchmark.models``: one module per plugin.

The registry imports every module of this package when it is first asked for a plugin, so adding a
plugin is adding a module; importing one plugin module imports only the plugins it builds on
(``mc_dropout`` reuses the baseline's recipe, for example), never all of them.
"""
