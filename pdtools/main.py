"""Entry point of the `pdtools` command (also `python -m pdtools.main`).

The root stays small: each area (node, chute, cloud, store) is its own group in its own module; the chute
commands of `node` live in node_chutes.
"""
import click

from pdtools.chute import chute
from pdtools.cloud import cloud
from pdtools.errors import PdtoolsError
from pdtools.node import node
from pdtools.node_chutes import COMMANDS as NODE_CHUTE_COMMANDS
from pdtools.output import CliError
from pdtools.store import store


class _Root(click.Group):
    """Turns any PdtoolsError escaping a command into an `error: ...` line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PdtoolsError as exc:
            raise CliError(str(exc)) from exc


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
def pdtools():
    """Command line for ParaDrop edge nodes and their controller."""


pdtools.add_command(node)
pdtools.add_command(chute)
pdtools.add_command(cloud)
pdtools.add_command(store)
for command in NODE_CHUTE_COMMANDS:
    node.add_command(command)


def main():
    pdtools(prog_name="pdtools")


if __name__ == "__main__":
    main()
