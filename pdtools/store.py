"""`pdtools store ...`: the controller's chute store, and deployments of its versions to many nodes.

A store chute has versions, each a chute project (a tar, or a paradrop.yaml alone) checked by the controller as a
node checks an upload; `install-chute` deploys one version to nodes or to a group, and `watch-deployment` (or
`install-chute --follow`) shows each node's progress live and exits 0 only if every node succeeded.
"""
import json
import time
from collections import Counter

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pdtools.cloud import CloudGroup, CloudSession, controller_options, json_option, pass_session
from pdtools.cloud_client import FINAL_DELIVERY_STATES
from pdtools.errors import ApiError, ConnectionFailed
from pdtools.output import CliError, clock, human_time, print_json, print_table
from pdtools.project import DESCRIPTION_FILE, ProjectError, pack_project, read_description

INTERRUPTED_EXIT = 130


@click.group(cls=CloudGroup)
@controller_options
@click.pass_context
def store(ctx, controller, as_json):
    """The controller's chute store: chutes, their versions, and deployments of them to nodes."""
    ctx.obj = CloudSession(controller, as_json)


@store.command("list-chutes")
@json_option
@pass_session
def list_chutes(session):
    """List the chutes in the store."""
    chutes = session.client().list_store_chutes()
    if session.as_json:
        print_json(chutes)
    elif not chutes:
        click.echo("No chutes in the store.")
    else:
        print_table(("name", "owner", "versions", "description"),
                    [(c.get("name"), c.get("owner"), c.get("versions"), c.get("description") or None) for c in chutes])


@store.command("create-chute")
@click.argument("name")
@click.option("--description", help="A line saying what the chute does.")
@json_option
@pass_session
def create_chute(session, name, description):
    """Create a chute in the store (its versions come with create-version)."""
    answer = session.client().create_store_chute(name, description)
    if session.as_json:
        print_json(answer)
    else:
        click.echo(f"Created chute {name} in the store.")


@store.command("create-version")
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(exists=True, file_okay=False))
@click.option("--description-only", is_flag=True,
              help=f"Send only {DESCRIPTION_FILE} (for chutes whose services need no files of the project).")
@json_option
@pass_session
def create_version(session, directory, description_only):
    """Add a version of a chute to the store from a project directory.

    DIR (default: the current directory) is uploaded as `pdtools node install-chute` uploads it; the chute and
    the version are the name and version in DIR/paradrop.yaml, and the chute must exist in the store.
    """
    description = read_description(directory)
    name = description.get("name")
    if not isinstance(name, str) or not name:
        raise ProjectError(f"{DESCRIPTION_FILE} in {directory} names no chute", "name")
    client = session.client()
    try:
        if description_only:
            answer = client.create_version(name, description)
        else:
            with pack_project(directory) as archive:
                answer = client.create_version(name, archive)
    except ApiError as exc:
        if exc.status != 404:
            raise
        raise CliError(str(exc), hint=f"create the chute first: 'pdtools store create-chute {name}'") from exc
    if session.as_json:
        print_json(answer)
    else:
        click.echo(f"Created version {answer.get('version', description.get('version'))} of {name} in the store.")


@store.command("list-versions")
@click.argument("chute")
@json_option
@pass_session
def list_versions(session, chute):
    """List the versions of a store chute."""
    versions = session.client().list_versions(chute)
    if session.as_json:
        print_json(versions)
    elif not versions:
        click.echo(f"No versions of {chute}.")
    else:
        rows = [(v.get("version"), human_time(v.get("created")), v.get("created_by"), v.get("size"),
                 (v.get("sha256") or "")[:12] or None) for v in versions]
        print_table(("version", "created", "by", "size", "sha256"), rows)


# -- deployments


@store.command("install-chute")
@click.argument("chute")
@click.argument("version")
@click.option("--node", "nodes", multiple=True, metavar="ID", help="A node to install it on (repeat for more).")
@click.option("--group", metavar="GROUP", help="Install it on every node of this group.")
@click.option("--follow", is_flag=True, help="Show each node's progress until every node is done.")
@json_option
@pass_session
@click.pass_context
def install_chute(ctx, session, chute, version, nodes, group, follow):
    """Install VERSION of store chute CHUTE on nodes (--node ...) or on a group (--group).

    A node that is offline gets it when it connects again. A node where the chute is installed already gets it
    as an update.
    """
    if bool(nodes) == bool(group):
        raise click.UsageError("give the nodes with --node ID (one or more) or a group with --group, not both")
    client = session.client()
    deployment = client.deploy(chute, version, nodes=list(nodes) if nodes else None, group=group)
    deliveries = deployment.get("deliveries") or []
    if not follow:
        if session.as_json:
            print_json(deployment)
            return
        click.echo(f"Deployment {deployment['id']}: {chute} {version} to {len(deliveries)} node(s).")
        _print_deliveries(deliveries)
        click.echo(f"Follow it with 'pdtools store watch-deployment {deployment['id']}'.")
        return
    if not session.as_json:
        click.echo(f"Deployment {deployment['id']}: {chute} {version} to {len(deliveries)} node(s).")
    _watch(ctx, session, client, deployment["id"], deliveries)


@store.command("watch-deployment")
@click.argument("deployment_id")
@json_option
@pass_session
@click.pass_context
def watch_deployment(ctx, session, deployment_id):
    """Show each node's progress in a deployment until every node is done; exit code 0 only if every node
    succeeded."""
    client = session.client()
    _watch(ctx, session, client, deployment_id, client.get_deployment(deployment_id).get("deliveries") or [])


@store.command("list-deployments")
@json_option
@pass_session
def list_deployments(session):
    """List the deployments you can see, with how far each has got."""
    deployments = session.client().list_deployments()
    if session.as_json:
        print_json(deployments)
    elif not deployments:
        click.echo("No deployments.")
    else:
        rows = [(d.get("id"), d.get("chute"), d.get("version"), d.get("user"), human_time(d.get("created")),
                 _tally(d.get("states") or {})) for d in deployments]
        print_table(("id", "chute", "version", "user", "created", "nodes"), rows)


def _watch(ctx, session, client, deployment_id, deliveries):
    """Follow a deployment, print its outcome per node, and fail unless every node succeeded."""
    try:
        final = follow_deployment(session, client, deployment_id, deliveries)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: deployment {deployment_id} goes on; "
                   f"follow it with 'pdtools store watch-deployment {deployment_id}'", err=True)
        ctx.exit(INTERRUPTED_EXIT)
    outcome = final.get("deliveries") or []
    if session.as_json:
        click.echo(json.dumps(final))
    else:
        _print_deliveries(outcome)
    states = Counter(d.get("state") for d in outcome)
    if set(states) - {"succeeded"}:
        raise CliError(f"deployment {deployment_id} did not succeed on every node: {_tally(states)}")
    if not session.as_json:
        click.echo(f"deployment {deployment_id} succeeded on {len(outcome)} node(s)")


def follow_deployment(session, client, deployment_id, deliveries):
    """Print a deployment's progress as it comes and return the deployment once every delivery is final.

    People see one line per message under a progress bar of the nodes done; --json prints each message as one
    JSON object a line. The outcome is then asked of the controller; if the stream broke off, or closed while
    some delivery is not final, it is asked again until every one is.
    """
    states = {d.get("node_id"): d.get("state") for d in deliveries}
    try:
        if session.as_json:
            for message in client.stream_deployment(deployment_id):
                click.echo(json.dumps(message))
        else:
            _show_progress(client, deployment_id, states)
    except ConnectionFailed as exc:
        # The deployment goes on at the controller whatever happens to this connection: follow it by asking.
        click.echo(f"note: {exc}; following deployment {deployment_id} by polling", err=True)
    return _poll_deployment(client, deployment_id)


def _show_progress(client, deployment_id, states):
    console = Console(markup=False, highlight=False, emoji=False)
    columns = (TextColumn(f"deployment {deployment_id}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        done = _done(states)
        task = progress.add_task("nodes", total=len(states) or None, completed=done)
        for message in client.stream_deployment(deployment_id):
            node_id, state = message.get("node_id"), message.get("state")
            done += (state in FINAL_DELIVERY_STATES) - (states.get(node_id) in FINAL_DELIVERY_STATES)
            states[node_id] = state
            text = f": {message['message']}" if message.get("message") else ""
            console.print(f"{clock(message.get('time') or time.time())} {node_id} {state}{text}", soft_wrap=True)
            progress.update(task, total=len(states), completed=done)


def _done(states):
    return sum(state in FINAL_DELIVERY_STATES for state in states.values())


def _poll_deployment(client, deployment_id, interval=0.5):
    """The deployment once every delivery is final, asked for every ``interval`` seconds (at most 10 failed asks
    in a row)."""
    failures = 0
    while True:
        try:
            deployment = client.get_deployment(deployment_id)
            failures = 0
        except ConnectionFailed:
            failures += 1
            if failures >= 10:
                raise
            deployment = {}
        deliveries = deployment.get("deliveries")
        if deliveries is not None and all(d.get("state") in FINAL_DELIVERY_STATES for d in deliveries):
            return deployment
        time.sleep(interval)


def _print_deliveries(deliveries):
    rows = [(d.get("node_id"), d.get("state"), d.get("change_id"), d.get("message")) for d in deliveries]
    print_table(("node", "state", "change", "message"), rows)


def _tally(states):
    """"2 succeeded, 1 failed" for a mapping of state -> number of deliveries."""
    return ", ".join(f"{count} {state}" for state, count in sorted(states.items(), key=lambda item: str(item[0])))
