"""The ``tmf`` command: one subcommand per stage of the workflow.

Each stage package registers its own subcommands (``tmf.<stage>.cli.register``) and imports its heavy
dependencies only when the subcommand runs, so ``tmf --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from tmf import __version__
from tmf.config import ParamsError

# Stage packages, in the order of the workflow's DAG.
STAGES = ("tmf.data.cli", "tmf.appearance.cli", "tmf.ssl.cli", "tmf.evaluate.cli", "tmf.predict.cli",
          "tmf.report.cli", "tmf.tracking.cli")


class _Stages(argparse._SubParsersAction):
    """Subcommands whose ``--help`` says what they do: the one-line ``help`` is also the description when a
    stage gives none."""

    def add_parser(self, name, **kwargs):
        kwargs.setdefault("description", kwargs.get("help"))
        return super().add_parser(name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tmf",
        description="Self-supervised learning on MiniFrance / tinyMiniFrance. Each subcommand is one stage of "
        "the Snakemake workflow; `snakemake --cores all` runs them all in order.",
    )
    parser.add_argument("--version", action="version", version=f"tmf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<stage>", required=True, action=_Stages)
    for name in STAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # stage not written yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return run_command(args)
    except (ParamsError, FileNotFoundError, ValueError) as e:
        # Bad input: a clear message naming the file or parameter, no traceback.
        print(f"tmf {args.command}: error: {e}", file=sys.stderr)
        return 2


def run_command(args: argparse.Namespace) -> int:
    """Run the subcommand as one job: its MLflow run (:func:`tmf.tracking.command.job_run`: a child of the
    workflow's parent run, a standalone run, or none) is handed to the handler as ``args.run`` and ends FAILED
    when the handler raises or returns an exit status."""
    from tmf.tracking.command import job_run

    with job_run(args) as run:
        args.run = run
        rc = int(args.func(args) or 0)
        if rc:
            run.status = "FAILED"
    return rc


def choices_help(what: str, choices) -> str:
    """Help text that lists the valid names (argparse ``choices=`` would refuse them without a "did you mean";
    the handlers check the name with :func:`tmf.config.check_name`)."""
    return f"{what}: one of {', '.join(choices)}"


def add_cfg_arguments(p: argparse.ArgumentParser) -> None:
    """``--cfg JSON`` (the stage's section, as the workflow passes it) or ``--params FILE`` (a params YAML)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--cfg", help="this stage's parameters as JSON (what the workflow passes)")
    g.add_argument("--params", help="a params YAML file (defaults from the schema fill the rest)")


if __name__ == "__main__":
    sys.exit(main())
