"""The labeler's runtime modules, importable from the agent's source tree.

Not part of a generated package: its own ``__init__.py`` is rendered from
``__init__.py.jinja``, and the renderer skips this file.
"""
