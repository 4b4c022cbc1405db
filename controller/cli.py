"""The composition root: parses arguments, builds settings, clients and clocks, maps outcomes
to exit codes.  Nothing below this module reads ``sys.argv`` or the environment directly.

Subcommands:
  emulator   serve the Machines API emulator on loopback
  demo       start the embedded emulator, seed it, and show the fleet through the API client
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from controller import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse.error() exits with it

_EPILOG = """\
exit codes:
  0  success
  1  error (bad settings, bad input, API or network failure)
  2  usage error (unknown command or option)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="machine-reconciler",
        description="Keep Fly.io Machines equal to declarative desired-state files.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default: WARNING)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    emu = sub.add_parser(
        "emulator",
        help="serve the Fly Machines API emulator over HTTP",
        description="Serve the Fly Machines API emulator (the /v1 paths and /_emulator/ control).",
    )
    emu.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    emu.add_argument("--port", type=int, default=4280, help="TCP port (default: 4280)")
    emu.add_argument("--scenario", type=Path, help="YAML/JSON file: behaviour, seed data, faults")
    emu.add_argument("--token", help="accept only this bearer token (default: any non-empty one)")
    emu.add_argument("--seed", type=int, default=0, help="random seed for ids and faults")

    sub.add_parser(
        "demo",
        help="run the embedded emulator, seed it, and list machines through the client",
        description="A self-contained demonstration against the embedded emulator on loopback.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``machine-reconciler`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "emulator":
        return _cmd_emulator(args)
    from controller.demo import run_demo  # args.command == "demo" (argparse enforces the set)

    return run_demo()


def _cmd_emulator(args: argparse.Namespace) -> int:
    from controller.emulator import run_server

    if args.scenario is not None and not args.scenario.is_file():
        print(
            f"machine-reconciler: error: scenario file not found: {args.scenario}", file=sys.stderr
        )
        return EXIT_ERROR
    run_server(args.host, args.port, scenario=args.scenario, token=args.token, seed=args.seed)
    return EXIT_OK
