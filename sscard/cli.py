"""The ``sscard`` command. Each package contributes its own group through the
``sscard.commands`` entry point, so the foundation never imports the packages above it."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import click


@dataclass
class Context:
    """What every command gets: the data directory (``--home``)."""

    home: Path


def home_option_default() -> str:
    return os.environ.get("SSCARD_HOME") or "./sscard-data"


class PluginGroup(click.Group):
    """Adds the groups that installed packages declare under ``sscard.commands``."""

    def _plugins(self) -> dict[str, click.Command]:
        found: dict[str, click.Command] = {}
        for ep in entry_points(group="sscard.commands"):
            found[ep.name] = ep.load()
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            return cmd
        for ep in entry_points(group="sscard.commands", name=cmd_name):
            loaded = ep.load()
            return loaded if isinstance(loaded, click.Command) else None
        return None


@click.group(cls=PluginGroup)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=home_option_default,
    show_default="$SSCARD_HOME or ./sscard-data",
    help="Data directory for commands that keep state.",
)
@click.pass_context
def cli(ctx: click.Context, home: Path) -> None:
    """sscard-pki: CA, RA, KMC, card and gateway tooling for the social security card."""
    ctx.obj = Context(home=home)


def main() -> None:
    try:
        cli(prog_name="sscard")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
