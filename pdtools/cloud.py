"""`pdtools cloud ...`: an account on a controller, and the nodes and groups of nodes it manages.

The controller's URL comes from --controller or PARADROP_CONTROLLER_URL; its token is saved by `cloud login` in
the token store, keyed by that URL like a node's. The group's session and 401 handling serve `pdtools store` too.
"""
import re
from dataclasses import dataclass

import click
from rich.table import Column

from pdtools.cloud_client import ControllerClient
from pdtools.config import forget_token, normalize_target, save_token, saved_token
from pdtools.errors import ApiError, ConnectionFailed
from pdtools.node import _stdin_lines
from pdtools.output import CliError, human_time, print_json, print_mapping, print_table

DEFAULT_CONTROLLER = "http://127.0.0.1:8000"
CONTROLLER_ENV = "PARADROP_CONTROLLER_URL"
#: What a 401 names when the token itself was refused (missing, expired, revoked), not some other credential.
TOKEN_FIELDS = (None, "token", "Authorization")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class CloudSession:
    """What the `cloud` or `store` group's options decided, handed to their commands."""

    controller: str
    as_json: bool

    def client(self, authenticated=True):
        return ControllerClient(self.controller, saved_token(self.controller) if authenticated else None)

    def login_command(self):
        where = "" if self.controller == DEFAULT_CONTROLLER else f" --controller {self.controller}"
        return f"pdtools cloud{where} login"


pass_session = click.make_pass_decorator(CloudSession)


def _json_flag(ctx, param, value):
    if value:
        ctx.find_object(CloudSession).as_json = True


json_option = click.option(
    "--json", is_flag=True, expose_value=False, callback=_json_flag,
    help="Print JSON (the same as --json before the command).",
)


class CloudGroup(click.Group):
    """Says what to do about a 401, whichever command met it (except login and register, where it means a wrong
    password)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            if exc.status != 401 or exc.field not in TOKEN_FIELDS or ctx.invoked_subcommand in ("login", "register"):
                raise
            session = ctx.find_object(CloudSession)
            hint = f"run '{session.login_command()}' to get a token for {session.controller}"
            raise CliError(str(exc), hint=hint) from exc


def _normalize_controller(ctx, param, value):
    try:
        return normalize_target(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def controller_options(group):
    """--controller and --json, the options of the `cloud` and `store` groups."""
    group = click.option("--json", "as_json", is_flag=True, help="Print JSON (every command that prints data).")(group)
    return click.option(
        "--controller", envvar=CONTROLLER_ENV, show_envvar=True, default=DEFAULT_CONTROLLER, show_default=True,
        callback=_normalize_controller, metavar="URL", help="Base URL of the controller (host:port means http://).",
    )(group)


@click.group(cls=CloudGroup)
@controller_options
@click.pass_context
def cloud(ctx, controller, as_json):
    """Work with a ParaDrop controller: your account, your nodes and groups of them."""
    ctx.obj = CloudSession(controller, as_json)


def _password(password_stdin, confirm=False):
    if password_stdin:
        return _stdin_lines(1)[0]
    return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)


# -- the account


@cloud.command()
@click.option("--username", prompt=True, help="The new account's name (asked for if not given).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_session
def register(session, username, password_stdin):
    """Open an account on the controller (if it allows registration) and log in with it."""
    password = _password(password_stdin, confirm=True)
    client = session.client(authenticated=False)
    client.register(username, password)
    save_token(session.controller, client.login(username, password))
    click.echo(f"Registered and logged in to {session.controller} as {username}.")


@cloud.command()
@click.option("--username", prompt=True, help="The account's name (asked for if not given).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_session
def login(session, username, password_stdin):
    """Log in and save the token for later commands."""
    password = _password(password_stdin)
    client = session.client(authenticated=False)
    save_token(session.controller, client.login(username, password))
    admin = " (controller admin)" if client.identity.get("admin") else ""
    click.echo(f"Logged in to {session.controller} as {client.identity.get('username') or username}{admin}.")


@cloud.command()
@pass_session
def logout(session):
    """Revoke the saved token on the controller and forget it."""
    if saved_token(session.controller) is None:
        click.echo(f"Not logged in to {session.controller}.")
        return
    try:
        session.client().logout()
    except ApiError as exc:
        if exc.status != 401:  # a token the controller no longer takes is as good as revoked
            raise
    except ConnectionFailed as exc:
        click.echo(f"note: {exc}; the token was forgotten here but not revoked", err=True)
    forget_token(session.controller)
    click.echo(f"Logged out of {session.controller}.")


# -- nodes


def _online(node):
    return None if node.get("online") is None else ("online" if node["online"] else "offline")


@cloud.command("list-nodes")
@click.option("--online/--offline", default=None, help="Only the nodes online (or offline).")
@json_option
@pass_session
def list_nodes(session, online):
    """List the nodes you are a member of: online or not, software version, number of chutes, your role.

    describe-node shows one node's chutes, groups and when it was last seen.
    """
    nodes = session.client().list_nodes(online)
    if session.as_json:
        print_json(nodes)
    elif not nodes:
        click.echo("No nodes.")
    else:
        rows = [(n.get("id"), n.get("name"), _online(n), n.get("version"), len(n.get("chutes") or ()), n.get("role"))
                for n in nodes]
        columns = (Column("id", no_wrap=True), "name", "status", "version", "chutes", "role")
        print_table(columns, rows)


@cloud.command("create-node")
@click.argument("name")
@json_option
@pass_session
def create_node(session, name):
    """Create a node; prints its id and its secret, which the controller never shows again."""
    answer = session.client().create_node(name)
    if session.as_json:
        print_json(answer)
        return
    print_mapping({key: answer.get(key) for key in ("id", "name", "secret", "controller", "wamp_router")},
                  title=f"Node {answer.get('name')}")
    click.echo("\nThe secret is shown only this once. Provision the node with it (on the node; from elsewhere with "
               "`pdtools node --target URL`):")
    click.echo(f"  pdtools node provision {answer.get('id')} {answer.get('secret')} "
               f"--controller {answer.get('controller') or session.controller} --wamp {answer.get('wamp_router')}")


@cloud.command("claim-node")
@click.argument("claim_token")
@json_option
@pass_session
def claim_node(session, claim_token):
    """Become the owner of a node that provisioned itself with a provision key, by its claim token."""
    answer = session.client().claim_node(claim_token)
    if session.as_json:
        print_json(answer)
    else:
        click.echo(f"Claimed node {answer.get('id')} ({answer.get('name')}).")


@cloud.command("describe-node")
@click.argument("node_id")
@json_option
@pass_session
def describe_node(session, node_id):
    """Show a node: online or not, its software, your role, its groups and its chutes."""
    node = session.client().get_node(node_id)
    if session.as_json:
        print_json(node)
        return
    summary = {
        "id": node.get("id"), "name": node.get("name"), "status": _online(node),
        "last seen": human_time(node.get("last_seen")), "version": node.get("version"), "role": node.get("role"),
        "groups": ", ".join(node.get("groups") or ()) or None,
    }
    print_mapping(summary, title=f"Node {node.get('name')}")
    chutes = node.get("chutes") or []
    if chutes:
        click.echo()
        print_table(("chute", "version", "state"), [(c.get("name"), c.get("version"), c.get("state")) for c in chutes])


@cloud.command("rename-node")
@click.argument("node_id")
@click.argument("name")
@json_option
@pass_session
def rename_node(session, node_id, name):
    """Give a node another name."""
    answer = session.client().rename_node(node_id, name)
    if session.as_json:
        print_json(answer)
    else:
        click.echo(f"Node {node_id} is now named {name}.")


@cloud.command("delete-node")
@click.argument("node_id")
@json_option
@pass_session
def delete_node(session, node_id):
    """Delete a node from the controller: its secret no longer lets it connect."""
    answer = session.client().delete_node(node_id)
    if session.as_json:
        print_json(answer)
    else:
        click.echo(f"Deleted node {node_id}.")


def _duration(ctx, param, value):
    match = _DURATION.match(value)
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(f"{value!r} is not a duration such as 3600, 90m, 12h or 7d")
    return int(match.group(1)) * _SECONDS[match.group(2)]


@cloud.command("provision-key")
@click.option("--name", required=True, help="What the key is for (it names the key in the controller's lists).")
@click.option("--max-nodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many nodes may provision themselves with the key.")
@click.option("--ttl", default="1h", show_default=True, callback=_duration, metavar="DURATION",
              help="How long the key is valid: seconds, or a number with s, m, h or d.")
@json_option
@pass_session
def provision_key(session, name, max_nodes, ttl):
    """Create a key with which many nodes provision themselves; prints it once."""
    answer = session.client().create_provision_key(name, max_nodes, ttl)
    if session.as_json:
        print_json(answer)
        return
    click.echo(answer.get("key"))
    click.echo(f"note: the key is shown only this once; up to {max_nodes} node(s) can use it within {ttl} s: "
               f"POST {session.controller}/api/v1/provision {{\"provision_key\": KEY, \"name\": NAME}}", err=True)


# -- groups of nodes


@cloud.group()
def group():
    """Groups of nodes: a deployment can go to a whole group."""


@group.command("list")
@json_option
@pass_session
def list_groups(session):
    """List the groups and their nodes."""
    groups = session.client().list_groups()
    if session.as_json:
        print_json(groups)
    elif not groups:
        click.echo("No groups.")
    else:
        print_table(("group", "nodes"), [(g.get("name"), ", ".join(g.get("nodes") or ()) or None) for g in groups])


def _group_command(name, summary, call, done, *arguments):
    @json_option
    @pass_session
    def command(session, **kwargs):
        answer = call(session.client(), *(kwargs[argument] for argument in arguments))
        if session.as_json:
            print_json(answer)
        else:
            click.echo(done.format(**kwargs))

    for argument in reversed(arguments):
        command = click.argument(argument)(command)
    return group.command(name, help=summary)(command)


create_group = _group_command("create", "Create a group of nodes.", ControllerClient.create_group,
                              "Created group {group}.", "group")
delete_group = _group_command("delete", "Delete a group (its nodes stay).", ControllerClient.delete_group,
                              "Deleted group {group}.", "group")
add_node = _group_command("add-node", "Add a node to a group.", ControllerClient.add_to_group,
                          "Added node {node_id} to group {group}.", "group", "node_id")
remove_node = _group_command("remove-node", "Take a node out of a group.", ControllerClient.remove_from_group,
                             "Removed node {node_id} from group {group}.", "group", "node_id")
