"""A chute project on this computer: a directory with paradrop.yaml at its top.

    description = read_description(directory)   # the parsed paradrop.yaml, ProjectError if unreadable
    check_project(directory)                    # the node's own validation, run locally
    with pack_project(directory) as archive:    # a tar of the project, ready to upload
        client.install_chute(archive)

Parsing and validation are the node's: pdtools and pdserver ship in one distribution, so this module imports
the pure paradrop.yaml model of pdserver (pdserver.chutes: the hostile-input YAML parser, the schema and its
checks, no reactor, no Docker) and a project that passes here passes the node's upload checks too.
"""
import os
import stat
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from pdtools.errors import PdtoolsError, with_field

DESCRIPTION_FILE = "paradrop.yaml"
#: Directory names never packed, at any depth: version control and Python's byte-code caches.
SKIPPED_DIRS = frozenset({".git", "__pycache__"})


class ProjectError(PdtoolsError):
    """The project cannot be used as it is; `field` is the dotted path of the culprit in paradrop.yaml."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self):
        return with_field(self.message, self.field)


#: Keys of a description shown first, in the order of a hand-written paradrop.yaml.
FIRST_KEYS = ("name", "version", "description", "owner", "environment", "web", "services")


def description_path(directory):
    return Path(directory) / DESCRIPTION_FILE


def read_description(directory):
    """paradrop.yaml of the project as a dict (not yet validated)."""
    path = description_path(directory)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"no {DESCRIPTION_FILE} in {directory} (is it a chute project?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"cannot read {path}: {exc}") from None
    return parse_description(text, str(path))


def parse_description(text, source=DESCRIPTION_FILE):
    """A YAML text as a description dict, parsed as the node parses it; ProjectError for bad YAML (also a
    document too large, too deep, or whose aliases expand too far) or anything but a mapping."""
    from pdserver.chutes.spec import SpecError, load_yaml  # the parser is the node's; imported when needed

    try:
        return load_yaml(text, source)
    except SpecError as exc:
        raise ProjectError(exc.message, None if exc.field == source else exc.field) from None


def check_description(description):
    """Validate a description as the node does; return the node's model of it (a ChuteSpec)."""
    from pdserver.chutes.spec import SpecError, build  # the schema is the node's; imported when needed

    try:
        return build(description)
    except SpecError as exc:
        raise ProjectError(exc.message, exc.field) from None


def check_project(directory, description=None):
    """Validate the project: its description (read from the project unless given), and the files its services
    need (source directories, Dockerfiles), as the node checks an upload."""
    from pdserver.chutes.source import SourceError, check_files

    spec = check_description(read_description(directory) if description is None else description)
    try:
        check_files(Path(directory), spec)
    except SourceError as exc:
        raise ProjectError(exc.message, exc.field) from None
    return spec


def description_yaml(description):
    """A description as YAML, its keys in the order of a hand-written paradrop.yaml."""
    import yaml

    first = {key: description[key] for key in FIRST_KEYS if key in description}
    ordered = {**first, **{key: value for key, value in description.items() if key not in first}}
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False, allow_unicode=True)


def multi_service_form(description):
    """ParaDrop's legacy single-service description converted as the node converts it; None when the
    description is in the multi-service form already."""
    from pdserver.chutes.spec import convert_legacy, is_legacy

    return convert_legacy(description) if is_legacy(description) else None


def project_members(directory):
    """(path, arcname) of every directory, file and link to pack, sorted; arcnames are relative POSIX paths."""
    root = Path(directory)
    members = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        relative = PurePosixPath(Path(current).relative_to(root).as_posix())
        for name in dirs + sorted(files):
            members.append((Path(current) / name, (relative / name).as_posix()))
    return sorted(members, key=lambda member: member[1])


def pack_project(directory):
    """A tar of the project in a temporary file, positioned at its start; closing it deletes it.

    Members are named relative to the project (paradrop.yaml at the top), owned by 0:0 with no user names, and
    keep their modes and times; links are stored as links. .git and __pycache__ directories are left out.
    Sockets, FIFOs and devices cannot be packed.
    """
    if not description_path(directory).is_file():
        raise ProjectError(f"no {DESCRIPTION_FILE} in {directory} (is it a chute project?)")
    archive = tempfile.TemporaryFile()
    try:
        with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path, arcname in project_members(directory):
                mode = path.lstat().st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                    raise ProjectError(f"{path} is not a file, directory or link and cannot be uploaded")
                tar.add(path, arcname=arcname, recursive=False, filter=_anonymous)
    except OSError as exc:
        archive.close()
        raise ProjectError(f"cannot pack {directory}: {exc}") from None
    except BaseException:
        archive.close()
        raise
    archive.seek(0)
    return archive


def _anonymous(member):
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member
