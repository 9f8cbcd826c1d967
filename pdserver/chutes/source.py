"""Chute projects arriving as tar archives: unpacked safely into a directory of the state dir.

Refused: absolute paths, '..', links of any kind that point outside the project,
hard links, devices and FIFOs, more than the size or file-count limit. A project
packed inside one top-level directory is accepted as if packed from inside it.
"""
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from pdserver.chutes.spec import SpecError


class SourceError(SpecError):
    pass


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise SourceError(f"archive member {name!r} points outside the project", "archive")
    parts = [p for p in path.parts if p not in (".", "")]
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def extract_project(stream: BinaryIO, dest: Path, max_bytes: int, max_files: int = 10000) -> Path:
    """Unpack a (possibly gzipped) tar stream into ``dest`` with paradrop.yaml at its top; return ``dest``."""
    dest.mkdir(parents=True, exist_ok=False)
    total, count = 0, 0
    try:
        try:
            archive = tarfile.open(fileobj=stream, mode="r|*")
        except tarfile.TarError as e:
            raise SourceError(f"not a tar archive: {e}", "archive") from None
        with archive:
            for member in archive:
                count += 1
                if count > max_files:
                    raise SourceError(f"archive has more than {max_files} files", "archive")
                rel = _safe_name(member.name)
                target = dest / rel
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if member.issym():
                    link = PurePosixPath(member.linkname)
                    resolved = _safe_name(str(rel.parent / link)) if not link.is_absolute() else None
                    if resolved is None:
                        raise SourceError(f"link {member.name!r} points outside the project", "archive")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(member.linkname, target)
                    continue
                if not member.isfile():
                    raise SourceError(f"archive member {member.name!r} is not a regular file or directory",
                                      "archive")
                total += member.size
                if total > max_bytes:
                    raise SourceError(f"project is larger than {max_bytes} bytes unpacked", "archive")
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink():
                    raise SourceError(f"archive member {member.name!r} overwrites a link", "archive")
                source = archive.extractfile(member)
                with open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
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
    if (dest / "paradrop.yaml").is_file():
        return dest
    entries = [p for p in dest.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink() \
            and (entries[0] / "paradrop.yaml").is_file():
        return entries[0]
    raise SourceError("the archive has no paradrop.yaml at its top", "paradrop.yaml")


def resolve_inside(root: Path, relative: str) -> Path:
    """A path named by the chute (service source, Dockerfile) that must stay inside its project."""
    path = (root / relative).resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise SourceError(f"{relative!r} points outside the project", "source")
    return path
