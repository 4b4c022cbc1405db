"""The command line and composition root: the only place that builds settings, clients, clocks
and logging, and maps results to exit codes.

:mod:`~controller.cli.commands` parses the command line and imports the module of the command
that runs, only then: ``validate`` (:mod:`~controller.cli.desired`), ``plan``
(:mod:`~controller.cli.plan`), ``apply`` (:mod:`~controller.cli.apply_command`, driving
:mod:`~controller.cli.apply`), ``adopt``, ``restart``, ``run`` (:mod:`~controller.cli.run`),
``emulator`` and ``demo`` (:mod:`~controller.cli.demo`).

May import: everything in ``controller``.  Nothing imports it except ``__main__``.
"""

from controller.cli.commands import main

__all__ = ["main"]
