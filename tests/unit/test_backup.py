"""Backups of a node's state dir: what goes in (and what stays out), a consistent database copy while a
writer holds it open, modes kept; and every refusal of a restore (running node, non-empty dir, newer release
or schema, hostile or damaged archives), each leaving the target as it was."""
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from pdserver import __version__, errors
from pdserver.main import cli
from pdserver.ops.state_dir import known_schema
from pdserver.ops import backup
from pdserver.ops.state_dir import lock
from pdserver.secretfiles import write_secret_file
from pdserver.storage import migrate, open_database

PROJECT = "0123456789abcdef0123456789abcdef"


def make_state(state: Path):
    """A state dir as a node leaves it: database (open, in WAL), secrets, a project, logs and run files."""
    conn = open_database(state / "node.db")
    migrate(conn, "chutes", ["CREATE TABLE chutes (name TEXT PRIMARY KEY, source_dir TEXT)"])
    conn.execute("INSERT INTO chutes VALUES ('hello', ?)", (str(state / "chutes" / "sources" / PROJECT),))
    write_secret_file(state / "node-secret", "s3cret\n")
    write_secret_file(state / "cloud.json", "{}\n")
    (state / "hostconfig.yaml").write_text("lan: {}\n")
    project = state / "chutes" / "sources" / PROJECT
    project.mkdir(parents=True)
    (project / "paradrop.yaml").write_text("name: hello\n")
    os.symlink("paradrop.yaml", project / "link.yaml")
    for regenerable in ("logs/node.log", "run/children/x.pid", "chutes/build/tmp/Dockerfile", "sysconfig/a.conf"):
        (state / regenerable).parent.mkdir(parents=True, exist_ok=True)
        (state / regenerable).write_text("x")
    return conn


def members(archive: Path) -> set:
    with tarfile.open(archive) as tar:
        return {m.name for m in tar.getmembers()}


@pytest.fixture
def archive(tmp_path):
    conn = make_state(tmp_path / "state")
    output = tmp_path / "b.tar.gz"
    backup.thd_backup(tmp_path / "state", output)
    conn.close()
    return output


def test_a_backup_holds_the_state_but_not_what_the_node_makes_again_and_is_private(tmp_path):
    conn = make_state(tmp_path / "state")
    conn.execute("INSERT INTO chutes VALUES ('late', NULL)")  # in the WAL only: the node holds the database open
    assert (tmp_path / "state" / "node.db-wal").stat().st_size > 0
    manifest = backup.thd_backup(tmp_path / "state", tmp_path / "b.tar.gz")
    assert stat.S_IMODE((tmp_path / "b.tar.gz").stat().st_mode) == 0o600
    conn.close()  # a stopped node's database (no -wal or -shm file left) copies too
    assert not (tmp_path / "state" / "node.db-wal").exists()
    backup.thd_backup(tmp_path / "state", tmp_path / "stopped.tar.gz")
    assert members(tmp_path / "stopped.tar.gz") == members(tmp_path / "b.tar.gz")
    files = {"node.db", "node-secret", "cloud.json", "hostconfig.yaml", f"chutes/sources/{PROJECT}/paradrop.yaml",
             f"chutes/sources/{PROJECT}/link.yaml"}
    assert set(manifest["files"]) == files
    assert members(tmp_path / "b.tar.gz") - {"chutes", "chutes/sources", f"chutes/sources/{PROJECT}"} == \
        files | {"manifest.json"}
    assert manifest["release"] == __version__ and manifest["schema"] == {"chutes": 1}
    assert manifest["files"]["node-secret"]["mode"] == 0o600
    restored = tmp_path / "new" / "state"
    backup.thd_restore(tmp_path / "b.tar.gz", restored)
    assert stat.S_IMODE(restored.stat().st_mode) == 0o700
    assert (restored / "node-secret").read_text() == "s3cret\n"
    assert stat.S_IMODE((restored / "node-secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((restored / "cloud.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((restored / "node.db").stat().st_mode) == 0o600
    assert os.readlink(restored / "chutes" / "sources" / PROJECT / "link.yaml") == "paradrop.yaml"
    copy = open_database(restored / "node.db")
    assert sorted(r[0] for r in copy.execute("SELECT name FROM chutes")) == ["hello", "late"]
    assert not any(p.name.startswith(".restore-") for p in restored.iterdir())
    assert not (restored / "logs").exists() and not (restored / "run").exists()


def test_the_cli_backs_up_and_restores_with_one_line_each(tmp_path):
    make_state(tmp_path / "state").close()
    runner = CliRunner()
    result = runner.invoke(cli, ["backup", "--state-dir", str(tmp_path / "state"), "--output",
                                 str(tmp_path / "b.tar.gz")])
    assert result.exit_code == 0 and "into" in result.output, result.output
    result = runner.invoke(cli, ["restore", "--state-dir", str(tmp_path / "new"), str(tmp_path / "b.tar.gz")])
    assert result.exit_code == 0 and f"of release {__version__}" in result.output, result.output
    result = runner.invoke(cli, ["restore", "--state-dir", str(tmp_path / "new"), str(tmp_path / "b.tar.gz")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'new'} is not empty: restore into an empty or new directory, or pass --force to "
        f"replace what it holds"]


def test_backup_refuses_a_dir_without_node_state_an_output_inside_it_and_an_existing_output(tmp_path, archive):
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.NotFound, match="holds no node state"):
        backup.thd_backup(tmp_path / "empty", tmp_path / "x.tar.gz")
    with pytest.raises(errors.InvalidInput, match="inside the state dir"):
        backup.thd_backup(tmp_path / "state", tmp_path / "state" / "logs" / "x.tar.gz")
    with pytest.raises(errors.Conflict, match="exists"):
        backup.thd_backup(tmp_path / "state", archive)
    assert not (tmp_path / "x.tar.gz").exists() and not (tmp_path / "state" / "logs" / "x.tar.gz").exists()


def test_restore_refuses_onto_a_running_node(tmp_path, archive):
    target = tmp_path / "running"
    with lock(target):  # what `pdserver node` holds while it runs
        with pytest.raises(errors.Conflict, match=f"pid {os.getpid()}.* is running on {target}: stop it first"):
            backup.thd_restore(archive, target)
    assert [p.name for p in target.iterdir()] == ["node.lock"]


def test_restore_refuses_a_non_empty_dir_unless_forced_and_then_replaces_its_contents(tmp_path, archive):
    target = tmp_path / "used"
    target.mkdir()
    (target / "old-file").write_text("old")
    with pytest.raises(errors.Conflict, match="is not empty"):
        backup.thd_restore(archive, target)
    assert (target / "old-file").read_text() == "old"
    backup.thd_restore(archive, target, force=True)
    assert not (target / "old-file").exists() and (target / "node-secret").read_text() == "s3cret\n"


def rewrite(archive: Path, out: Path, change_manifest=None, extra=()):
    """``archive`` repacked with its manifest changed and ``extra`` (TarInfo, bytes) members added."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isreg() else None
            if member.name == "manifest.json":
                manifest = json.loads(data)
                change_manifest(manifest) if change_manifest else None
                data = json.dumps(manifest).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
        for info, data in extra:
            info.size = len(data or b"")
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def refused(archive: Path, target: Path, error, match, **kwargs):
    """A restore into the absent ``target`` is refused and leaves nothing: no staging, no half restore."""
    with pytest.raises(error, match=match):
        backup.thd_restore(archive, target, **kwargs)
    assert not target.exists()


def test_restore_refuses_an_archive_of_a_newer_release_or_schema(tmp_path, archive):
    newer = rewrite(archive, tmp_path / "newer.tar.gz", lambda m: m.update(release="99.0.0"))
    refused(newer, tmp_path / "t1", errors.Conflict, f"release 99.0.0, newer than this one \\({__version__}\\)")
    state = tmp_path / "future"
    conn = make_state(state)
    conn.execute("UPDATE schema_versions SET version = ? WHERE component = 'chutes'", (known_schema()["chutes"] + 1,))
    backup.thd_backup(state, tmp_path / "future.tar.gz")
    refused(tmp_path / "future.tar.gz", tmp_path / "t2", errors.Conflict, "'chutes' at schema version")


def info(name, kind=tarfile.REGTYPE, linkname=""):
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.mode = kind, linkname, 0o644
    return member


@pytest.mark.parametrize("member, data, match", [
    (info("/etc/evil"), b"x", "points outside"),
    (info("../evil"), b"x", "points outside"),
    (info("chutes/../../evil"), b"x", "points outside"),
    (info("evil-link", tarfile.SYMTYPE, "/etc/passwd"), None, "points outside"),
    (info("evil-link", tarfile.SYMTYPE, "../../x"), None, "points outside"),
    (info("hard", tarfile.LNKTYPE, "node-secret"), None, "hard link"),
    (info("dev", tarfile.CHRTYPE), None, "refused"),
    (info("fifo", tarfile.FIFOTYPE), None, "refused"),
    (info("extra-file"), b"x", "differ from its manifest"),
    (info("node-secret"), b"altered", "does not match the manifest"),
])
def test_restore_refuses_hostile_or_altered_archives_and_leaves_nothing(tmp_path, archive, member, data, match):
    hostile = rewrite(archive, tmp_path / "hostile.tar.gz", extra=[(member, data)])
    refused(hostile, tmp_path / "target", errors.InvalidInput, match)
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_restore_refuses_an_archive_past_the_size_or_file_limits(tmp_path, archive):
    refused(archive, tmp_path / "t1", errors.InvalidInput, "larger than 10 bytes",
            limits=backup.Limits(max_bytes=10))
    refused(archive, tmp_path / "t2", errors.InvalidInput, "more than 3 files", limits=backup.Limits(max_files=3))


def test_restore_refuses_what_is_not_a_backup(tmp_path, archive):
    (tmp_path / "junk").write_bytes(b"not an archive at all" * 100)
    refused(tmp_path / "junk", tmp_path / "t1", errors.InvalidInput, "not a tar archive")
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.InvalidInput, match="not a tar archive"):
        backup.thd_restore(tmp_path / "junk", tmp_path / "empty")
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["node.lock"]  # an existing dir stays
    data = archive.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[:len(data) // 2])
    refused(tmp_path / "cut.tar.gz", tmp_path / "t2", errors.InvalidInput, "truncated")
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.addfile(info("hello.txt"), io.BytesIO(b""))
    refused(plain, tmp_path / "t3", errors.InvalidInput, "no manifest.json")
    odd = rewrite(archive, tmp_path / "odd.tar.gz", lambda m: m.update(format=7))
    refused(odd, tmp_path / "t4", errors.InvalidInput, "not of format 1")
    with pytest.raises(errors.NotFound, match="no archive"):
        backup.thd_restore(tmp_path / "absent.tar.gz", tmp_path / "t5")
