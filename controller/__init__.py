"""machine-reconciler: keeps Fly.io Machines equal to declarative desired-state files.

Importing the package has no side effects; the composition root is :mod:`controller.cli.commands`.
"""

__version__ = "0.1.0"
