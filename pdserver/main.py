"""``pdserver``: the node daemon and the cloud controller."""
import gc
import sys
from pathlib import Path
from typing import Optional

import click

from pdserver import settings as settings_module
from pdserver.ops.doctor import doctor


@click.group()
def cli():
    """ParaDrop server processes."""


@cli.command()
@click.option("--state-dir", type=click.Path(path_type=Path), help="Where the node keeps its state.")
@click.option("--port", type=int, help="Edge API port (default 8080).")
@click.option("--host", help="Edge API listen address (default 127.0.0.1).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML settings file.")
@click.option("--print-unit", is_flag=True,
              help="Print a systemd unit that runs this node with these options, and exit.")
def node(state_dir, port, host, config_file, print_unit):
    """Run the edge node daemon in the foreground."""
    from pdserver.ops import systemd
    if print_unit:
        click.echo(systemd.unit(state_dir or settings_module.Settings.state_dir, systemd.pdserver_command(),
                                config_file, host, port), nl=False)
        return
    try:
        settings = settings_module.load(config_file, state_dir=state_dir, port=port, host=host)
    except settings_module.SettingsError as e:
        raise click.UsageError(str(e))
    from twisted.internet import reactor, task
    from twisted.logger import Logger

    from pdserver.api.connections import raise_fd_limit
    from pdserver.logs import start_logging
    from pdserver.node import build_node
    from pdserver.ops.state_dir import StateDirBusy, lock
    from pdserver.storage import NewerSchema

    log = Logger(namespace="pdserver")
    try:
        state_lock = lock(settings.state_dir)  # held until the process ends
        start_logging(settings.log_dir, settings.log_level, max_bytes=settings.log_max_bytes, files=settings.log_files)
        raise_fd_limit()  # every idle client holds a descriptor: take all the kernel allows us
        built = build_node(settings, reactor)
    except (StateDirBusy, NewerSchema) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"error: cannot prepare state dir {settings.state_dir}: {e}", err=True)
        sys.exit(1)

    def started(_):
        gc.freeze()  # what start-up made lives as long as the node: keep full collections from walking it
        log.info("ParaDrop node ready: API at {url} (state in {state})", url=built.url,
                 state=str(settings.state_dir))
        systemd.notify(f"READY=1\nSTATUS=API at {built.url}")
        if interval := systemd.watchdog_interval():  # the reactor's own pings: a hung reactor gets restarted
            task.LoopingCall(systemd.notify, "WATCHDOG=1").start(interval)
        if settings.initial_password_path.exists():
            log.info("initial password of user 'paradrop' is in {path}", path=str(settings.initial_password_path))

    def failed(failure):
        log.failure("node failed to start", failure)
        exit_code[0] = 1
        reactor.stop()

    exit_code = [0]

    def start():
        from twisted.internet import defer
        d = defer.maybeDeferred(built.service.startService)
        d.addCallbacks(started, failed)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", systemd.notify, "STOPPING=1")
    reactor.addSystemEventTrigger("before", "shutdown", built.service.stopService)
    reactor.run()
    built.conn.close()
    state_lock.close()
    sys.exit(exit_code[0])


@cli.command()
@click.option("--state-dir", type=click.Path(path_type=Path), default=Path("/var/lib/paradrop-controller"),
              show_default=True, help="Where the controller keeps its database, chute archives and router.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="HTTP API port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP API listen address.")
@click.option("--router", "router_url", help="Join this WAMP router (ws://HOST:PORT/ws) instead of starting one.")
@click.option("--router-ticket-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The controller's ticket on the router given with --router.")
@click.option("--wamp-host", default="127.0.0.1", show_default=True, help="Listen address of the embedded router.")
@click.option("--wamp-port", type=click.IntRange(1, 65535), default=9086, show_default=True,
              help="Port of the embedded router.")
@click.option("--db", help="Database URL (default: sqlite in the state dir; sqlite:///PATH for another file; "
                           "postgresql://USER@HOST:PORT/DB, or ...@/DB?host=/SOCKET/DIR).")
@click.option("--db-pool-size", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Connections to a PostgreSQL database.")
@click.option("--allow-registration", is_flag=True, help="Let anyone create an account (closed by default).")
@click.option("--public-url", help="The HTTP API's URL as nodes reach it (default http://HOST:PORT).")
@click.option("--public-wamp-url", help="The router's URL as nodes reach it (default the router's own).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warn", "error"]), default="info",
              envvar="PARADROP_LOG_LEVEL", show_default=True, help="Least level logged (stdout and JSON log).")
def controller(state_dir, port, host, router_url, router_ticket_file, wamp_host, wamp_port, db, db_pool_size,
               allow_registration, public_url, public_wamp_url, log_level):
    """Run the cloud controller in the foreground."""
    if router_url is not None and not router_url.startswith(("ws://", "wss://")):
        raise click.UsageError("--router must be a ws:// or wss:// URL")
    public_url = _base_url("--public-url", public_url, ("http", "https"))
    public_wamp_url = _base_url("--public-wamp-url", public_wamp_url, ("ws", "wss"))
    if router_ticket_file is not None and router_url is None:
        raise click.UsageError("--router-ticket-file goes with --router")
    from twisted.internet import defer, reactor
    from twisted.logger import Logger

    from pdserver import errors
    from pdserver.api.connections import raise_fd_limit
    from pdserver.controller.router_worker import paradrop_router
    from pdserver.controller.service import ControllerSettings, build_controller
    from pdserver.logs import start_logging

    settings = ControllerSettings.from_environment(
        state_dir=state_dir, host=host, port=port, router_url=router_url, router_ticket_file=router_ticket_file,
        wamp_host=wamp_host, wamp_port=wamp_port, db=db, db_pool_size=db_pool_size,
        allow_registration=allow_registration, public_url=public_url, public_wamp_url=public_wamp_url)
    log = Logger(namespace="pdserver")
    try:
        start_logging(state_dir / "log", log_level)
        raise_fd_limit()
        built = build_controller(settings, reactor)
    except errors.Error as e:
        raise click.UsageError(f"{e.field}: {e.message}")
    except OSError as e:
        click.echo(f"error: cannot prepare state dir {state_dir}: {e}", err=True)
        sys.exit(1)
    exit_code = [0]

    def started(_):
        gc.freeze()
        paradrop_router.apply_gc_policy()  # the router's: a deployment to thousands of nodes is a burst here too
        log.info("ParaDrop controller ready: API at {url}, WAMP router {wamp}, database {db} (state in {state})",
                 url=built.url, wamp=settings.wamp_url, db=built.db.location.shown, state=str(state_dir))

    def failed(failure):
        from pdserver.storage import NewerSchema
        if failure.check(NewerSchema):
            click.echo(f"error: {failure.value}", err=True)
        elif failure.check(errors.Unavailable) and failure.value.field == "db":  # no traceback: say what is wrong
            click.echo(f"error: {failure.value.message}", err=True)
        else:
            log.failure("controller failed to start", failure)
        exit_code[0] = 1
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.maybeDeferred(built.service.startService).addCallbacks(started, failed))
    reactor.addSystemEventTrigger("before", "shutdown", built.service.stopService)
    reactor.run()
    sys.exit(exit_code[0])


@cli.command("router-config")
@click.option("--host", default="0.0.0.0", show_default=True, help="The router's listen address.")
@click.option("--port", type=click.IntRange(1, 65535), default=9086, show_default=True, help="The router's port.")
@click.option("--tls-key", help="Private key file (PEM) to serve wss://, as crossbar will find it.")
@click.option("--tls-cert", help="Certificate chain file (PEM) that goes with --tls-key.")
@click.option("--worker-path", default="router_worker", show_default=True,
              help="The directory holding paradrop_router.py (pdserver/controller/router_worker), as crossbar will "
                   "find it: tools/crossbar has it under this name.")
def router_config(host, port, tls_key, tls_cert, worker_path):
    """Print a crossbar config.json for a router run on its own (pdserver controller --router ...).

    The controller's ticket is not in it: crossbar reads it from PARADROP_CONTROLLER_TICKET, and the controller
    from --router-ticket-file. Nodes authenticate through the controller's dynamic authenticator and act under its
    authorizer: the router holds no node's credentials.
    """
    import json

    from pdserver.controller.router import TICKET_VARIABLE, router_config as config
    if (tls_key is None) != (tls_cert is None):
        raise click.UsageError("--tls-key and --tls-cert go together")
    tls = (tls_key, tls_cert) if tls_key else None
    click.echo(json.dumps(config(host, port, "${%s}" % TICKET_VARIABLE, web_root="www", tls=tls,
                                 worker_path=worker_path), indent=2))


@cli.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The node's state dir (the node may be running).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="The archive to write (default paradrop-backup-<UTC time>.tar.gz here).")
def backup(state_dir, output):
    """Back up a node's state into one archive (mode 0600: it holds the node's secrets)."""
    from pdserver.ops.backup import default_output, thd_backup
    output = output or default_output()
    manifest = _ops(thd_backup, state_dir, output)
    click.echo(f"backed up {len(manifest['files'])} files of {state_dir} into {output}")


@cli.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where to restore: absent or empty (the node must not be running on it).")
@click.option("--force", is_flag=True, help="Replace what a non-empty state dir holds.")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
def restore(state_dir, force, archive):
    """Restore a node's state from a backup archive; then start the node on it."""
    from pdserver.ops.backup import thd_restore
    manifest = _ops(thd_restore, archive, state_dir, force)
    click.echo(f"restored {len(manifest['files'])} files of release {manifest['release']} into {state_dir}")


def _ops(f, *args):
    """Run an operation; its refusal or an OS error as one line and exit status 1, never a traceback."""
    from pdserver import errors
    try:
        return f(*args)
    except errors.Error as e:
        click.echo(f"error: {e.message}", err=True)
    except OSError as e:
        click.echo(f"error: {e}", err=True)
    sys.exit(1)


def _base_url(option: str, value, schemes) -> Optional[str]:
    """``value`` without a trailing slash, or a usage error unless it is a URL of ``schemes`` with a host and no
    query, fragment or credentials (it is handed to every node)."""
    if value is None:
        return None
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(value)
        parts.port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment or \
            parts.username is not None or any(c.isspace() or ord(c) < 32 for c in value):
        raise click.UsageError(f"{option} must be a {' or '.join(s + '://' for s in schemes)} URL with a host, "
                               f"no query, fragment or credentials")
    return value.rstrip("/")


cli.add_command(doctor)


def main():
    cli()


if __name__ == "__main__":
    main()
