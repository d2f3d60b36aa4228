"""Templates of the generated labeler package, shipped inside the agent's wheel.

``labeler/`` is the package skeleton: ``*.jinja`` files are rendered from one
typed spec, every other file is copied as it is. ``labeler/pkg/`` becomes the
generated Python package; its plain modules are also importable from here
(``templates.labeler.pkg.tabular``), so the agent reads and writes data with
exactly the code the labeler uses, through one seam (``agent.package_runtime``).
The plain ``__init__.py`` files exist for that import only; rendering skips them.
"""
