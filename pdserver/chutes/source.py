"""Chute projects arriving as tar archives: unpacked safely into a directory of the state dir.

Per member, the standard library's ``data`` extraction filter applies (no devices or FIFOs, no
paths or links leaving the project, sane modes, no owners); on top of it we refuse absolute names,
'..' in names and link targets (the filter of Python 3.11.7 can be fooled through long symlink
chains), hard links, more than the size or file-count limit, long-name and pax header members larger
than MAX_HEADER_BYTES (tarfile would read a 1 GiB name whole) and truncated archives. A project
packed inside one top-level directory is accepted as if packed from inside it. Whatever fails,
nothing stays on disk.
"""
import lzma
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Optional, Tuple

from pdserver.chutes.spec import ChuteSpec, SpecError, build, load_yaml
from pdserver.errors import shorten
from pdserver.parsing import MAX_YAML_BYTES, decode_utf8

DESCRIPTION = "paradrop.yaml"
MAX_HEADER_BYTES = 64 * 1024
_HEADER_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                 tarfile.SOLARIS_XHDTYPE)
_STREAM_ERRORS = (tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError)


class SourceError(SpecError):
    pass


def _named(name: str) -> str:
    return repr(shorten(name, 200))


class _CappedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses oversized extended headers before tarfile reads them, and a header
    block cut short or missing (tarfile would take either for the end of the archive)."""

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        if len(buf) < tarfile.BLOCKSIZE:
            raise SourceError("the archive is truncated (it ends without the end-of-archive marker)", "archive")
        return super().frombuf(buf, encoding, errors)

    def _proc_member(self, archive):
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise SourceError(f"the archive has an extended header of {self.size} bytes (at most "
                              f"{MAX_HEADER_BYTES})", "archive")
        return super()._proc_member(archive)


class _Limits:
    """The extraction filter: our rules and limits, then the standard ``data`` filter."""

    def __init__(self, max_bytes: int, max_files: int):
        self._max_bytes, self._max_files = max_bytes, max_files
        self._bytes = self._files = 0

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        self._files += 1
        if self._files > self._max_files:
            raise SourceError(f"archive has more than {self._max_files} files", "archive")
        if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
            raise SourceError(f"archive member {_named(member.name)} points outside the project", "archive")
        if member.islnk():
            raise SourceError(f"archive member {_named(member.name)} is a hard link; pack the file itself",
                              "archive")
        if member.issym():
            target = PurePosixPath(member.linkname)
            if target.is_absolute() or ".." in target.parts:
                raise SourceError(f"link {_named(member.name)} points outside the project", "archive")
        if member.isreg():
            self._bytes += member.size
            if self._bytes > self._max_bytes:
                raise SourceError(f"project is larger than {self._max_bytes} bytes unpacked", "archive")
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError as e:
            raise SourceError(f"archive member {_named(member.name)} is refused: {shorten(str(e), 300)}",
                              "archive") from None


def extract_archive(stream: BinaryIO, dest: Path, max_bytes: int, max_files: int = 10000) -> None:
    """Unpack a (possibly compressed) tar stream into the new directory ``dest`` under the rules above (backups
    of a node's state use them too); SourceError, and nothing at ``dest``, otherwise."""
    dest.mkdir(parents=True, exist_ok=False)
    try:
        try:
            archive = tarfile.open(fileobj=stream, mode="r|*", tarinfo=_CappedTarInfo, errorlevel=2)
        except _STREAM_ERRORS as e:
            raise SourceError(f"not a tar archive: {shorten(str(e), 300)}", "archive") from None
        try:
            with archive:
                archive.extractall(dest, filter=_Limits(max_bytes, max_files))
        except _STREAM_ERRORS as e:
            raise SourceError(f"cannot unpack the archive (truncated or damaged?): {shorten(str(e), 300)}",
                              "archive") from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def extract_project(stream: BinaryIO, dest: Path, max_bytes: int, max_files: int = 10000) -> Path:
    """Unpack a (possibly compressed) tar stream into ``dest`` with paradrop.yaml at its top; return ``dest``."""
    extract_archive(stream, dest, max_bytes, max_files)
    try:
        root = find_root(dest)
        if root != dest:
            moved = dest.with_name(dest.name + ".project")
            root.rename(moved)
            shutil.rmtree(dest)
            moved.rename(dest)
        return dest
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def find_root(dest: Path) -> Path:
    if (dest / DESCRIPTION).is_file():
        return dest
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink() \
            and (entries[0] / DESCRIPTION).is_file():
        return entries[0]
    raise SourceError("the archive has no paradrop.yaml at its top", DESCRIPTION)


def read_description(root: Path) -> dict:
    """paradrop.yaml of an unpacked project, parsed (not yet validated)."""
    try:
        with open(root / DESCRIPTION, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
    except OSError as e:
        raise SourceError(f"cannot read paradrop.yaml: {e.strerror}", DESCRIPTION) from None
    if len(raw) > MAX_YAML_BYTES:
        raise SourceError(f"paradrop.yaml is larger than {MAX_YAML_BYTES} bytes", DESCRIPTION)
    return load_yaml(decode_utf8(raw, DESCRIPTION, code="invalid_chute"))


def thd_unpack_project(stream: BinaryIO, dest: Path, max_bytes: int) -> Tuple[dict, ChuteSpec]:
    """Thread code: unpack, parse and validate an uploaded project; its description and the chute built from
    it, or SpecError with nothing left at ``dest``."""
    extract_project(stream, dest, max_bytes)
    try:
        description = read_description(dest)
        spec = build(description)
        check_files(dest, spec)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return description, spec


def check_files(root: Path, spec: ChuteSpec) -> None:
    """The files the services need are in the project: each source directory, and a normal service's
    Dockerfile (a legacy chute is nothing but its root Dockerfile); SourceError names the field."""
    for service in spec.services:
        if service.type == "image":
            continue
        where = f"services.{service.name}"
        source = path_inside(root, service.source)
        if source is None:
            raise SourceError(f"{where}.source: {_named(service.source)} points outside the project",
                              f"{where}.source")
        if not source.is_dir():
            raise SourceError(f"{where}.source: {_named(service.source)} is not a directory of the project",
                              f"{where}.source")
        if service.type == "normal":
            dockerfile = path_inside(source, service.dockerfile)
            if dockerfile is None:
                raise SourceError(f"{where}.dockerfile: {_named(service.dockerfile)} points outside the project",
                                  f"{where}.dockerfile")
            if not dockerfile.is_file():
                raise SourceError(f"{where}: a normal service needs its Dockerfile, and "
                                  f"{dockerfile.relative_to(root.resolve())} is missing", f"{where}.dockerfile")


def path_inside(root: Path, relative: str) -> Optional[Path]:
    """``root / relative`` resolved, or None when it leaves ``root`` (through '..' or a link)."""
    root = root.resolve()
    path = (root / relative).resolve()
    return path if path == root or root in path.parents else None


def resolve_inside(root: Path, relative: str) -> Path:
    """A path named by the chute (service source, Dockerfile) that must stay inside its project."""
    path = path_inside(root, relative)
    if path is None:
        raise SourceError(f"{_named(relative)} points outside the project", "source")
    return path
