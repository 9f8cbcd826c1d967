"""``pdserver``: the node daemon (and, later, the cloud controller)."""
import gc
import sys
from pathlib import Path

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


def main():
    cli()


if __name__ == "__main__":
    main()
