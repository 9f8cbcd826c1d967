"""``pdserver``: the node daemon and the cloud controller."""
import gc
import sys
from pathlib import Path
from typing import Optional

import click

from pdserver import settings as settings_module


@click.group()
def cli():
    """ParaDrop server processes."""


@cli.command()
@click.option("--state-dir", type=click.Path(path_type=Path), help="Where the node keeps its state.")
@click.option("--port", type=int, help="Edge API port (default 8080).")
@click.option("--host", help="Edge API listen address (default 127.0.0.1).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML settings file.")
def node(state_dir, port, host, config_file):
    """Run the edge node daemon in the foreground."""
    try:
        settings = settings_module.load(config_file, state_dir=state_dir, port=port, host=host)
    except settings_module.SettingsError as e:
        raise click.UsageError(str(e))
    from twisted.internet import reactor
    from twisted.logger import Logger

    from pdserver.api.connections import raise_fd_limit
    from pdserver.logs import start_logging
    from pdserver.node import build_node

    log = Logger(namespace="pdserver")
    try:
        start_logging(settings.log_dir, settings.log_level)
        raise_fd_limit()  # every idle client holds a descriptor: take all the kernel allows us
        built = build_node(settings, reactor)
    except OSError as e:
        click.echo(f"error: cannot prepare state dir {settings.state_dir}: {e}", err=True)
        sys.exit(1)

    def started(_):
        gc.freeze()  # what start-up made lives as long as the node: keep full collections from walking it
        log.info("ParaDrop node ready: API at {url} (state in {state})", url=built.url,
                 state=str(settings.state_dir))
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
    reactor.addSystemEventTrigger("before", "shutdown", built.service.stopService)
    reactor.run()
    built.conn.close()
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
def controller(state_dir, port, host, router_url, router_ticket_file, wamp_host, wamp_port, db, db_pool_size,
               allow_registration, public_url, public_wamp_url):
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
    from pdserver.controller.service import ControllerSettings, build_controller
    from pdserver.logs import start_logging

    settings = ControllerSettings.from_environment(
        state_dir=state_dir, host=host, port=port, router_url=router_url, router_ticket_file=router_ticket_file,
        wamp_host=wamp_host, wamp_port=wamp_port, db=db, db_pool_size=db_pool_size,
        allow_registration=allow_registration, public_url=public_url, public_wamp_url=public_wamp_url)
    log = Logger(namespace="pdserver")
    try:
        start_logging(state_dir / "log", "info")
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
        log.info("ParaDrop controller ready: API at {url}, WAMP router {wamp}, database {db} (state in {state})",
                 url=built.url, wamp=settings.wamp_url, db=built.db.location.shown, state=str(state_dir))

    def failed(failure):
        if failure.check(errors.Unavailable) and failure.value.field == "db":  # no traceback: say what is wrong
            click.echo(f"error: {failure.value.message}", err=True)
        else:
            log.failure("controller failed to start", failure)
        exit_code[0] = 1
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.maybeDeferred(built.service.startService).addCallbacks(started, failed))
    reactor.addSystemEventTrigger("before", "shutdown", built.service.stopService)
    reactor.run()
    sys.exit(exit_code[0])


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


def main():
    cli()


if __name__ == "__main__":
    main()
