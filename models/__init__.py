"""The bundled model plugins, installed as ``benchmark.models``: one module per plugin.

The registry imports every module of this package when it is first asked for a plugin, so adding a
plugin is adding a module; importing one plugin module imports no other.
"""
