"""How pdtools prints: rich tables for people, JSON for scripts, `error: ...` lines on stderr for failures.

Server data is printed with rich markup off: a change message containing "[bold]" must show as written.
"""
import json
import time

import click
from rich import box
from rich.console import Console
from rich.table import Table


class CliError(click.ClickException):
    """A failure to report as `error: <message>` (and an optional `hint: ...`) on stderr, exit code 1."""

    exit_code = 1

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.hint = hint

    def show(self, file=None):
        click.echo(f"error: {self.format_message()}", file=file, err=True)
        if self.hint:
            click.echo(f"hint: {self.hint}", file=file, err=True)


def print_json(value):
    click.echo(json.dumps(value, indent=2))


def print_table(columns, rows, title=None, show_header=True):
    """Print rows (sequences of cell values) under column headings (names or rich Columns); None shows as "-"."""
    table = Table(
        *columns, title=title, title_justify="left", show_header=show_header,
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
    )
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    Console(markup=False, highlight=False, emoji=False).print(table)


def print_mapping(mapping, title):
    """Print a flat JSON object as a two-column key/value table."""
    print_table(("key", "value"), mapping.items(), title=title, show_header=False)


def human_time(timestamp):
    """A unix time as local "YYYY-MM-DD HH:MM:SS"; None as None."""
    return None if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def clock(timestamp):
    """A unix time as local "HH:MM:SS", the prefix of live progress lines."""
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
