"""`pdtools node ...`: log in to one node and read its state over the Edge API."""
import json
import os
import sys
import time
from dataclasses import dataclass

import click
import requests
from rich.table import Column

from pdtools.client import NodeClient
from pdtools.config import TOKEN_ENV, current_token, forget_token, normalize_target, save_token
from pdtools.errors import ApiError, ConnectionFailed
from pdtools.output import CliError, clock, human_time, print_json, print_mapping, print_table

DEFAULT_TARGET = "http://127.0.0.1:8080"
TARGET_ENV = "PDTOOLS_NODE_TARGET"
CHANGE_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")


@dataclass
class NodeSession:
    """What the `node` group's options decided, handed to its commands."""

    target: str
    as_json: bool

    def client(self, authenticated=True):
        return NodeClient(self.target, current_token(self.target) if authenticated else None)

    def login_command(self):
        where = "" if self.target == DEFAULT_TARGET else f" --target {self.target}"
        return f"pdtools node{where} login"


pass_session = click.make_pass_decorator(NodeSession)


class _NodeGroup(click.Group):
    """Says what to do about a 401, whichever command met it (except login, where it means a wrong password)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            if exc.status != 401 or exc.field is not None or ctx.invoked_subcommand == "login":
                raise
            session = ctx.find_object(NodeSession)
            if os.environ.get(TOKEN_ENV):
                hint = f"the token in {TOKEN_ENV} was refused (it overrides the one '{session.login_command()}' saved)"
            else:
                hint = f"run '{session.login_command()}' to get a token for {session.target}"
            raise CliError(str(exc), hint=hint) from exc


def _normalize_target_option(ctx, param, value):
    try:
        return normalize_target(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(cls=_NodeGroup)
@click.option(
    "--target",
    envvar=TARGET_ENV,
    show_envvar=True,
    default=DEFAULT_TARGET,
    show_default=True,
    callback=_normalize_target_option,
    metavar="URL",
    help="Base URL of the node (host:port means http://host:port).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every command that prints data or progress).")
@click.pass_context
def node(ctx, target, as_json):
    """Work with one ParaDrop node over its HTTP API."""
    ctx.obj = NodeSession(target, as_json)


@node.command()
@click.option("--username", default="paradrop", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_session
def login(session, username, password_stdin):
    """Log in and save the token for later commands."""
    password = _stdin_lines(1)[0] if password_stdin else click.prompt("Password", hide_input=True)
    client = session.client(authenticated=False)
    save_token(session.target, client.login(username, password))
    who = client.identity.get("username") or username
    role = f" ({client.identity['role']})" if client.identity.get("role") else ""
    click.echo(f"Logged in to {session.target} as {who}{role}.")
    _warn_if_env_token()


@node.command()
@pass_session
def logout(session):
    """Forget the saved token of the node."""
    if forget_token(session.target):
        click.echo(f"Logged out of {session.target}.")
    else:
        click.echo(f"Not logged in to {session.target}.")
    _warn_if_env_token()


@node.command()
@pass_session
def info(session):
    """Show the node's hardware, software and features."""
    client = session.client()
    hardware = client.info("hardware")
    software = client.info("software")
    features = client.info("features").get("features", [])
    if session.as_json:
        print_json({"hardware": hardware, "software": software, "features": features})
        return
    print_mapping(hardware, title="Hardware")
    click.echo()
    print_mapping(software, title="Software")
    click.echo()
    print_table(("feature",), [(feature,) for feature in features], title="Features", show_header=False)


@node.command("list-changes")
@click.option("--state", type=click.Choice(CHANGE_STATES), help="Only changes in this state.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many changes.")
@pass_session
def list_changes(session, state, limit):
    """List the node's changes (installs, updates, configuration)."""
    changes = session.client().list_changes(state=state, limit=limit)
    if session.as_json:
        print_json(changes)
    elif not changes:
        click.echo("No changes.")
    else:
        keys = ("id", "type", "target", "user", "state")
        rows = [[*(change.get(key) for key in keys), human_time(change.get("created"))] for change in changes]
        print_table((*keys, Column("created", no_wrap=True)), rows)


@node.command("watch-change")
@click.argument("change_id", type=int)
@pass_session
@click.pass_context
def watch_change(ctx, session, change_id):
    """Follow a change's progress until it ends; exit code 0 only if it succeeded."""
    final = follow_change(session, session.client(), change_id)
    ctx.exit(0 if final.get("state") == "succeeded" else 1)


def follow_change(session, client, change_id):
    """Print a change's progress as it comes (one JSON object a line with --json); return its final state.

    The final state is the last frame of the stream (it has "state" and "result"), or, from a node whose stream
    ends without one, the change as GET /changes/<id> shows it. A stream that ends while the change is still
    queued or running is an error.
    """
    final = None
    try:
        for message in client.stream_change(change_id):
            if session.as_json:
                click.echo(json.dumps(message))
            elif message.get("message") is not None:
                click.echo(f"{clock(message.get('time', 0))} {message['message']}")
            if "state" in message:
                final = message
    except ConnectionFailed as e:
        # The change goes on on the node whatever happens to this connection: follow it by asking.
        click.echo(f"note: {e}; following change {change_id} by polling", err=True)
        final = _poll_change(client, change_id)
        if session.as_json:
            click.echo(json.dumps(final))
    if final is None:
        # The stream closed without the final frame (a ParaDrop node before ours): ask for the outcome.
        final = client.get_change(change_id)
        if session.as_json:
            click.echo(json.dumps(final))
    state = final.get("state")
    if state in ("queued", "running"):
        raise CliError(f"the stream of change {change_id} closed while the change is {state}")
    if not session.as_json:
        click.echo(f"change {change_id} {state}")
        if final.get("result") is not None:
            click.echo(f"result: {json.dumps(final['result'])}")
    return final


def _poll_change(client, change_id, interval=0.5):
    """The change once it has ended, asked for every ``interval`` seconds (at most 10 failed asks in a row)."""
    failures = 0
    while True:
        try:
            change = client.get_change(change_id)
            failures = 0
        except ConnectionFailed:
            failures += 1
            if failures >= 10:
                raise
            change = {}
        if change.get("state") not in (None, "queued", "running"):
            return change
        time.sleep(interval)


@node.command("set-password")
@click.option("--username", default="paradrop", show_default=True)
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the old and the new password from two lines of stdin.")
@pass_session
def set_password(session, username, from_stdin):
    """Change a user's password on the node."""
    if from_stdin:
        old, new = _stdin_lines(2)
    else:
        old = click.prompt("Old password", hide_input=True)
        new = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    answer = session.client().change_password(username, old, new)
    click.echo(answer.get("message") or f"Password changed for {username}.")


@node.command()
@click.argument("node_id", metavar="ID")
@click.argument("key", metavar="KEY")
@click.option("--controller", "-c", help="The controller's URL (http://...); asked for its WAMP router when --wamp "
                                         "is not given.")
@click.option("--wamp", "-w", help="The WAMP router's URL (ws://HOST:PORT/ws).")
@pass_session
def provision(session, node_id, key, controller, wamp):
    """Bind the node to a cloud controller: ID and KEY are the node id and secret the controller gave when the
    node was created (KEY "-" reads it from the first line of stdin, away from the process list)."""
    if key == "-":
        (key,) = _stdin_lines(1)
    if wamp is None:
        if controller is None:
            raise click.UsageError("give --wamp, or --controller to ask it for its WAMP router")
        wamp = controller_router(controller)
    _print_provision(session, session.client().provision(node_id, key, wamp, controller))


@node.command("describe-provision")
@pass_session
def describe_provision(session):
    """Show whether the node is bound to a controller and whether its link is up."""
    _print_provision(session, session.client().get_provision())


def controller_router(controller):
    """The WAMP router URL a controller announces (GET /api/v1/router)."""
    url = controller.rstrip("/") + "/api/v1/router"
    try:
        response = requests.get(url, timeout=10)
    except requests.RequestException as exc:
        raise ConnectionFailed(url, str(exc)) from exc
    if not response.ok:
        raise ApiError.from_response(response.status_code, response.content, response.headers)
    try:
        return response.json()["wamp_router"]
    except (ValueError, KeyError, TypeError):
        raise CliError(f"{url} did not name a WAMP router", hint="give --wamp") from None


def _print_provision(session, status):
    if session.as_json:
        print_json(status)
        return
    rows = {"provisioned": status.get("provisioned"), "node id": status.get("routerId"),
            "controller": status.get("pdserver"), "WAMP router": status.get("wampRouter"),
            "connected": status.get("connected"), "last connected": human_time(status.get("last_connected")),
            "last error": status.get("last_error")}
    print_mapping(rows, title="Provisioning")


def _stdin_lines(count):
    """Read `count` lines of stdin, without their line ends (a password may end in spaces)."""
    lines = [sys.stdin.readline() for _ in range(count)]
    if not all(lines):
        raise click.UsageError(f"expected {count} line(s) on stdin, got {sum(map(bool, lines))}")
    return [line.rstrip("\r\n") for line in lines]


def _warn_if_env_token():
    if os.environ.get(TOKEN_ENV):
        click.echo(f"note: {TOKEN_ENV} is set and overrides the saved token", err=True)
