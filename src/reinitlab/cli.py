"""`reinitlab <command>`: the tools around training (training itself is `reinitlab-train`).

Each command lives in its own module, imported only when used, which exposes
`add_arguments(parser)` and `run(args) -> int`. Add a command by adding it to COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from reinitlab.errors import ReinitlabError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "probe": ("reinitlab.probe", "linear probe + variability score for every layer"),
    "status": (
        "reinitlab.sweep.status",
        "done / failed / missing / running jobs of a sweep directory",
    ),
    "report": ("reinitlab.report.cli", "tables, figures and report.html from finished sweeps"),
    "dashboard": ("reinitlab.report.dashboard", "a W&B workspace for a study, built from its runs"),
}


def build_parser() -> argparse.ArgumentParser:
    """The `reinitlab` parser: one subcommand per COMMANDS entry, each module adding its own
    arguments (so every command module is imported to build it)."""
    parser = argparse.ArgumentParser(prog="reinitlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `reinitlab` command; returns the exit code (2 for a ReinitlabError, reported as a
    one-line message, not a traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except ReinitlabError as e:
        print(f"reinitlab {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
