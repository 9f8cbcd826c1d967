"""`pdtools chute ...`: write and check a chute project on this computer (no node involved)."""
import os
from pathlib import Path

import click

from pdtools.output import CliError
from pdtools.project import (
    DESCRIPTION_FILE, ProjectError, check_project, description_path, description_yaml, multi_service_form,
    read_description,
)
from pdtools.templates import LIGHT_IMAGES, PORT, TEMPLATES, default_name, project_files


@click.group()
def chute():
    """Author chute projects: a directory with paradrop.yaml at its top."""


@chute.command()
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(file_okay=False))
@click.option("--name", help="The chute's name (default: made from the directory's name).")
@click.option("--type", "type_", type=click.Choice(("light", "image")), default="light", show_default=True,
              help="light: built from a ParaDrop base with the project's files; image: an image run as it is.")
@click.option("--image", metavar="IMAGE",
              help=f"light: the base, one of {', '.join(LIGHT_IMAGES)} (default python3); "
                   "image: an image reference (default paradrop/python3:latest).")
@click.option("--host-port", type=click.IntRange(1, 65535), default=PORT, show_default=True,
              help="The node's port on which the chute's web page is published.")
@click.option("--template", type=click.Choice(TEMPLATES), default="web", show_default=True,
              help="web: a static page; wifi: a Wi-Fi access point (wlan0) whose page lists its clients (DHCP "
                   "leases and stations) through the node's API.")
def init(directory, name, type_, image, host_port, template):
    """Write an example chute project.

    Writes, in DIR (default: the current directory), a chute that serves a web page on port 8000: paradrop.yaml
    and, for a light chute, a tiny app and www/index.html (with --template wifi: an access point and app.py, whose
    page lists the access point's clients). Refuses to overwrite any file.
    """
    target = Path(directory)
    if name is None:
        name = default_name(target.resolve().name)
        if name is None:
            raise click.UsageError(f"cannot make a chute name from {target.resolve().name!r}: give one with --name")
    try:
        files = project_files(name, type_, image, host_port, template)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    existing = sorted(path for path in files if os.path.lexists(target / path))
    if existing:
        raise CliError(f"{directory} already has {', '.join(existing)}: refusing to overwrite")
    try:
        for path, text in files.items():
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            with open(target / path, "x", encoding="utf-8") as f:
                f.write(text)
    except OSError as exc:
        raise CliError(f"cannot write the project in {directory}: {exc}") from None
    click.echo(f"Wrote chute {name} in {directory}: {', '.join(sorted(files))}")
    click.echo(f"Next: pdtools chute validate {directory} && pdtools node install-chute {directory}")


@chute.command()
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(exists=True, file_okay=False))
def validate(directory):
    """Check a project's paradrop.yaml as a node would.

    Checks DIR/paradrop.yaml (default: the current directory) and the files its services need; prints
    the first error, naming its field, and exits 1 if the project would be refused. A description in
    ParaDrop's legacy single-service form is also printed as the multi-service form the node makes of it
    (`pdtools chute convert` writes it).
    """
    description = read_description(directory)  # its errors name the file already
    try:
        spec = check_project(directory, description)
    except ProjectError as exc:
        raise CliError(f"{description_path(directory)}: {exc}") from None
    services = ", ".join(
        f"{s.name} ({s.type} {s.image})" if s.image else f"{s.name} ({s.type})" for s in spec.services)
    click.echo(f"{description_path(directory)}: chute {spec.name} version {spec.version} is valid; "
               f"services: {services}")
    converted = multi_service_form(description)
    if converted is not None:
        click.echo(f"It is in ParaDrop's legacy single-service form; the node reads it as:\n\n"
                   f"{description_yaml(converted)}")


@chute.command()
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(exists=True, file_okay=False))
def convert(directory):
    """Rewrite a legacy paradrop.yaml in the multi-service form.

    Validates DIR (default: the current directory) first; then writes the multi-service form the node
    makes of ParaDrop's legacy single-service form to DIR/paradrop.yaml, keeping the original as
    DIR/paradrop.yaml.legacy. Comments of the original are not carried over.
    """
    path = description_path(directory)
    description = read_description(directory)
    try:
        check_project(directory, description)
    except ProjectError as exc:
        raise CliError(f"{path}: {exc}") from None
    converted = multi_service_form(description)
    if converted is None:
        click.echo(f"{path} is in the multi-service form already; nothing to convert")
        return
    backup = Path(directory) / f"{DESCRIPTION_FILE}.legacy"
    try:
        os.replace(path, backup)
        path.write_text(description_yaml(converted), encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc}") from None
    click.echo(f"Wrote {path} in the multi-service form; the original is {backup}")
