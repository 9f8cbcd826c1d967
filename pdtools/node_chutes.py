"""`pdtools node ...-chute(s)`: install, update, run and inspect the chutes of one node.

Every command that changes a chute follows the change it started, as `watch-change` does, and exits 0 only if
the change succeeded (with `error: change N failed: <why>` otherwise); `--no-wait` prints the change id instead.
The commands are added to the `node` group by pdtools.main (see COMMANDS).
"""
import json

import click
from rich.table import Column

from pdtools.node import NodeSession, follow_change, pass_session
from pdtools.output import CliError, clock, human_time, print_json, print_mapping, print_table
from pdtools.project import (
    DESCRIPTION_FILE, ProjectError, check_description, description_yaml, pack_project, parse_description,
    read_description,
)

INTERRUPTED_EXIT = 130


def _json_flag(ctx, param, value):
    if value:
        ctx.find_object(NodeSession).as_json = True


json_option = click.option(
    "--json", is_flag=True, expose_value=False, callback=_json_flag,
    help="Print JSON (the same as `pdtools node --json`).",
)
no_wait_option = click.option(
    "--no-wait", is_flag=True, help="Print the change id and return at once instead of following the change.",
)


def _directory_argument(command):
    """[DIR] as an argument, or -d/--directory DIR as ParaDrop's pdtools 0.13 took it."""
    command = click.option("-d", "--directory", "directory_option", metavar="DIR",
                           type=click.Path(exists=True, file_okay=False),
                           help="The project directory (the same as DIR).")(command)
    return click.argument("directory", required=False, metavar="[DIR]",
                          type=click.Path(exists=True, file_okay=False))(command)


def _project_directory(directory, directory_option):
    if directory and directory_option:
        raise click.UsageError("give the project directory either as DIR or with --directory, not both")
    return directory or directory_option or "."


# -- changing chutes


@click.command("install-chute")
@_directory_argument
@no_wait_option
@json_option
@pass_session
@click.pass_context
def install_chute(ctx, session, directory, directory_option, no_wait):
    """Install a chute from a project directory.

    DIR (default: the current directory) is uploaded, without .git and __pycache__, as a tar with its
    paradrop.yaml at the top.
    """
    directory = _project_directory(directory, directory_option)
    client = session.client()
    with pack_project(directory) as archive:
        answer = client.install_chute(archive)
    _run_change(ctx, session, client, answer, no_wait)


@click.command("update-chute")
@_directory_argument
@no_wait_option
@json_option
@pass_session
@click.pass_context
def update_chute(ctx, session, directory, directory_option, no_wait):
    """Update a chute from its project directory.

    DIR (default: the current directory) is uploaded as for install-chute; the chute to update is the one named
    in DIR/paradrop.yaml, and its version there must be newer than the installed one.
    """
    directory = _project_directory(directory, directory_option)
    name = read_description(directory).get("name")
    if not isinstance(name, str) or not name:
        raise ProjectError(f"{DESCRIPTION_FILE} in {directory} names no chute", "name")
    client = session.client()
    with pack_project(directory) as archive:
        answer = client.update_chute(name, archive)
    _run_change(ctx, session, client, answer, no_wait)


@click.command("remove-chute")
@click.argument("name")
@no_wait_option
@json_option
@pass_session
@click.pass_context
def remove_chute(ctx, session, name, no_wait):
    """Remove a chute, its containers and its data."""
    client = session.client()
    _run_change(ctx, session, client, client.remove_chute(name), no_wait)


def _action_command(action, summary):
    @click.command(f"{action}-chute", help=summary)
    @click.argument("name")
    @no_wait_option
    @json_option
    @pass_session
    @click.pass_context
    def command(ctx, session, name, no_wait):
        client = session.client()
        _run_change(ctx, session, client, client.chute_action(name, action), no_wait)
    return command


start_chute = _action_command("start", "Start a stopped chute.")
stop_chute = _action_command("stop", "Stop a chute; it stays installed.")
restart_chute = _action_command("restart", "Restart the services of a chute.")


@click.command("edit-chute-configuration")
@click.argument("name")
@click.option("--file", "source", type=click.File("r", encoding="utf-8"), metavar="FILE",
              help="Apply the description in this YAML file ('-' for stdin) instead of opening an editor.")
@no_wait_option
@json_option
@pass_session
@click.pass_context
def edit_chute_configuration(ctx, session, name, source, no_wait):
    """Edit a chute's paradrop.yaml and apply it.

    Opens $VISUAL or $EDITOR on the chute's current description in YAML; saving a changed description restarts
    the chute with it (the version may stay the same). With --file, applies that file instead.
    """
    client = session.client()
    current = client.get_chute_config(name)
    if source is not None:
        new = parse_description(source.read(), "-" if source.name == "<stdin>" else source.name)
        _check_edited(name, current, new)
    else:
        new = _edit_interactively(name, current)
        if new is None:
            click.echo(f"Nothing saved: the configuration of {name} stays as it was.")
            return
    if new == current:
        click.echo(f"No change to the configuration of {name}.")
        return
    _run_change(ctx, session, client, client.set_chute_config(name, new), no_wait)


def _edit_interactively(name, current):
    """The description as saved in the editor (None if not saved); offers to edit again while it is invalid."""
    header = (f"# The configuration of chute {name}. Save and quit to apply it; quit without saving to cancel.\n"
              "# Lines starting with '#' are ignored.\n")
    text = header + description_yaml(current)
    while True:
        edited = click.edit(text, extension=".yaml", require_save=True)
        if edited is None:
            return None
        try:
            new = parse_description(edited, "the edited configuration")
            _check_edited(name, current, new)
            return new
        except ProjectError as exc:
            click.echo(f"error: {exc}", err=True)
            if not click.confirm("Edit again?", default=True, err=True):
                raise CliError(f"the configuration of {name} was not changed") from None
            kept = "".join(line for line in edited.splitlines(keepends=True) if not line.startswith("# error: "))
            text = f"# error: {exc}\n{kept}"


def _check_edited(name, current, new):
    """Validate an edited description as the node will (it fills in a missing name and version)."""
    if new.get("name", name) != name:
        raise ProjectError(f"the configuration is of chute {new['name']}, not {name}", "name")
    check_description({**new, "name": name, "version": new.get("version", current.get("version"))})


def _run_change(ctx, session, client, answer, no_wait):
    """Follow the change a command started; exit 1 with its reason if it did not succeed."""
    change_id = answer["change_id"]
    if no_wait:
        if session.as_json:
            print_json({"change_id": change_id})
        else:
            click.echo(change_id)
        return
    try:
        final = follow_change(session, client, change_id)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: change {change_id} goes on on the node; "
                   f"follow it with 'pdtools node watch-change {change_id}'", err=True)
        ctx.exit(INTERRUPTED_EXIT)
    state = final.get("state")
    if state != "succeeded":
        reason = _failure_reason(final.get("result"))
        raise CliError(f"change {change_id} {state}" + (f": {reason}" if reason else ""))


def _failure_reason(result):
    """The sentence saying why a change failed: its result's message (or error, or error.message)."""
    if not isinstance(result, dict):
        return None
    reason = result.get("message") or result.get("error")
    if isinstance(reason, dict):
        reason = reason.get("message")
    return str(reason) if reason else None


# -- reading chutes


@click.command("list-chutes")
@json_option
@pass_session
def list_chutes(session):
    """List the chutes installed on the node."""
    chutes = session.client().list_chutes()
    if session.as_json:
        print_json(chutes)
    elif not chutes:
        click.echo("No chutes installed.")
    else:
        rows = [(c.get("name"), c.get("version"), c.get("state"), ", ".join(c.get("services") or ()))
                for c in chutes]
        print_table(("name", "version", "state", "services"), rows)


@click.command("describe-chute")
@click.argument("name")
@json_option
@pass_session
def describe_chute(session, name):
    """Show a chute and the state of its services."""
    chute = session.client().get_chute(name)
    if session.as_json:
        print_json(chute)
        return
    web = chute.get("web")
    summary = {
        "name": chute.get("name"), "version": chute.get("version"), "state": chute.get("state"),
        "description": chute.get("description") or None, "installed": human_time(chute.get("installed")),
        "updated": human_time(chute.get("updated")),
        "web": f"service {web.get('service')}, port {web.get('port')}" if web else None,
    }
    print_mapping(summary, title=f"Chute {chute.get('name')}")
    if chute.get("environment"):
        click.echo()
        print_mapping(chute["environment"], title="Environment")
    states = chute.get("service_states") or []
    if states:
        click.echo()
        rows = [(s.get("name"), s.get("type"), s.get("status"), s.get("health"), s.get("restart_count"),
                 s.get("address"), _ports(s.get("ports"))) for s in states]
        columns = ("service", "type", "status", "health", "restarts", Column("address", no_wrap=True),
                   Column("ports", overflow="fold"))
        print_table(columns, rows, title="Services")


def _ports(ports):
    if not ports:
        return None
    return ", ".join(f"{p.get('external')}->{p.get('internal')}/{p.get('protocol', 'tcp')}" for p in ports)


@click.command("chute-logs")
@click.argument("name")
@click.option("--tail", type=click.IntRange(min=1), metavar="N", help="At most N lines per service.")
@json_option
@pass_session
def chute_logs(session, name, tail):
    """Print the last output of a chute's services."""
    lines = session.client().chute_logs(name, tail=tail)
    if session.as_json:
        print_json(lines)
        return
    for line in lines:
        click.echo(_log_line(line))


@click.command("watch-chute-logs")
@click.argument("name")
@click.option("--timestamps", is_flag=True, help="Start each line with the time the node sent it.")
@json_option
@pass_session
def watch_chute_logs(session, name, timestamps):
    """Follow the output of a chute's services.

    Prints `[service] line` until Ctrl-C or until the node closes the stream.
    """
    try:
        for frame in session.client().follow_chute_logs(name):
            if session.as_json:
                click.echo(json.dumps(frame))
            else:
                prefix = f"{clock(frame.get('timestamp') or 0)} " if timestamps else ""
                click.echo(prefix + _log_line(frame))
    except KeyboardInterrupt:
        pass  # the usual way to stop following


def _log_line(line):
    return f"[{line.get('service')}] {str(line.get('message', '')).rstrip()}"


COMMANDS = (
    install_chute, update_chute, remove_chute, start_chute, stop_chute, restart_chute, edit_chute_configuration,
    list_chutes, describe_chute, chute_logs, watch_chute_logs,
)
