"""Entry point of the `pdtools` command (also `python -m pdtools.main`).

The root stays small: each area (node, and later chute, cloud, store) is its own group in its own module.
"""
import click

from pdtools.errors import PdtoolsError
from pdtools.node import node
from pdtools.output import CliError


class _Root(click.Group):
    """Turns any PdtoolsError escaping a command into an `error: ...` line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PdtoolsError as exc:
            raise CliError(str(exc)) from exc


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
def pdtools():
    """Command line for ParaDrop edge nodes."""


pdtools.add_command(node)


def main():
    pdtools(prog_name="pdtools")


if __name__ == "__main__":
    main()
