"""The `propensity` command: a thin shell over the stage functions (no logic of its own).

Each sub-command lives in its own module under ``cli/`` and is imported only when it is called,
so `propensity --help` and quick commands stay fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from propensity.errors import PropensityError

# command name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("demo", "demo", "Run every stage end to end on a synthetic shop."),
    "generate": ("generate", "generate", "Generate a synthetic shop (events, users, oracle)."),
    "features": ("data", "features", "Build point-in-time feature snapshots."),
    "forget": ("data", "forget", "Record a privacy deletion of a user."),
    "segment": ("segment", "segment", "Engagement scores, journey stages and behavioural clusters."),
    "train": ("train", "train", "Optuna search over model families, tracked in MLflow."),
    "audit": ("audit", "audit", "Fairness audit and SHAP explanations of a model."),
    "retrain": ("retrain", "retrain", "Train, audit and stage a challenger; switch on the serving split."),
    "promote": ("audit", "promote", "Move the champion alias (audit passed, or an A/B decided)."),
    "serve": ("serve", "serve", "Start the HTTP prediction service."),
    "consume": ("serve", "consume", "Apply events from a Redis Stream to the live profile store."),
    "build": ("serve", "build", "Build a bento that carries the model (serves it anywhere)."),
    "ab": ("ab", "ab", "A/B test planning and analysis."),
    "keys": ("serve", "keys", "API keys of the HTTP service."),
    "recommend": ("recommend", "recommend", "Train and compare product recommenders."),
    "monitor": ("monitor", "monitor", "Drift, realised and estimated performance, fairness over time."),
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[cmd_name]
        try:
            module = importlib.import_module(f"propensity.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return _not_available(cmd_name)
            raise
        cmd: click.Command = getattr(module, attr)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _not_available(name: str) -> click.Command:
    @click.command(name=name, help=f"{COMMANDS[name][2]} (not available in this build)")
    def _cmd() -> None:
        raise PropensityError(f"'propensity {name}' is not available in this build")

    return _cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="propensity")
def cli() -> None:
    """propensity: conversion prediction and experiment analysis for content personalization."""


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the console script: user errors become one line on stderr and exit code 2."""
    try:
        return cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PropensityError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
