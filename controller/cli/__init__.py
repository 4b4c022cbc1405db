"""The command line and composition root: the only place that builds settings, clients, clocks
and logging, and maps results to exit codes.

Owns ``validate``, ``plan``, ``apply`` (:mod:`~controller.cli.apply`), ``run``
(:mod:`~controller.cli.run`), ``emulator`` and ``demo`` (:mod:`~controller.cli.demo`).

May import: everything in ``controller``.  Nothing imports it except ``__main__``.
"""

from controller.cli.commands import main

__all__ = ["main"]
