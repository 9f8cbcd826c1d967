"""pdtools.project: packing a chute project into the tar the node unpacks, and checking it locally."""
import io
import os
import tarfile

import pytest

from pdserver.chutes.source import extract_project
from pdtools.project import ProjectError, check_project, pack_project, read_description
from tests.unit.test_parsing import BOMB

YAML = "name: hello\nversion: 1\nservices:\n  main: {type: light, image: python3, command: python3 app.py}\n"


def write(path, text="", mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "hello"
    write(root / "paradrop.yaml", YAML)
    write(root / "app.py", "print('hi')\n", mode=0o755)
    write(root / "www" / "index.html", "<h1>hi</h1>\n")
    (root / "empty").mkdir()
    os.symlink("www/index.html", root / "index.html")
    for skipped in (".git/HEAD", ".git/objects/ab/cdef", "__pycache__/app.cpython-311.pyc",
                    "www/__pycache__/x.pyc", "www/.git/config"):
        write(root / skipped, "skip me")
    return root


def members(archive):
    with tarfile.open(fileobj=archive) as tar:
        return {member.name: member for member in tar.getmembers()}


def test_members_are_named_relative_to_the_project_without_git_or_pycache(project):
    with pack_project(project) as archive:
        found = members(archive)
    assert sorted(found) == ["app.py", "empty", "index.html", "paradrop.yaml", "www", "www/index.html"]


def test_modes_and_links_are_kept_and_owners_are_anonymous(project):
    with pack_project(project) as archive:
        found = members(archive)
    assert found["app.py"].mode & 0o777 == 0o755
    assert found["empty"].isdir()
    assert found["index.html"].issym() and found["index.html"].linkname == "www/index.html"
    assert {(m.uid, m.gid, m.uname, m.gname) for m in found.values()} == {(0, 0, "", "")}


def test_the_archive_is_what_the_node_unpacks(project, tmp_path):
    with pack_project(project) as archive:
        unpacked = extract_project(io.BytesIO(archive.read()), tmp_path / "unpacked", max_bytes=10 ** 6)
    assert (unpacked / "paradrop.yaml").read_text() == YAML
    assert (unpacked / "www" / "index.html").read_text() == "<h1>hi</h1>\n"
    assert not (unpacked / ".git").exists() and not (unpacked / "__pycache__").exists()


def test_the_archive_is_a_temporary_file_at_its_start(project):
    archive = pack_project(project)
    assert archive.tell() == 0
    archive.close()
    assert archive.closed


def test_a_directory_without_paradrop_yaml_is_not_packed(tmp_path):
    with pytest.raises(ProjectError, match=r"no paradrop.yaml in .* \(is it a chute project\?\)"):
        pack_project(tmp_path)


def test_a_fifo_cannot_be_packed(project):
    os.mkfifo(project / "pipe")
    with pytest.raises(ProjectError, match="is not a file, directory or link"):
        pack_project(project)


def test_read_description_says_what_is_wrong_with_the_yaml(tmp_path):
    write(tmp_path / "paradrop.yaml", "name: [unclosed\n")
    with pytest.raises(ProjectError, match="is not valid YAML"):
        read_description(tmp_path)
    write(tmp_path / "paradrop.yaml", "- a list\n")
    with pytest.raises(ProjectError, match="must hold a mapping"):
        read_description(tmp_path)


def test_check_project_gives_the_node_model_of_a_good_project(project):
    spec = check_project(project)
    assert (spec.name, spec.version, [s.name for s in spec.services]) == ("hello", "1", ["main"])


def test_check_project_names_the_field_of_a_schema_error(tmp_path):
    write(tmp_path / "paradrop.yaml", YAML.replace("command: python3 app.py", "command: x, cpu: 2"))
    with pytest.raises(ProjectError) as caught:
        check_project(tmp_path)
    assert caught.value.field == "services.main.cpu"
    assert str(caught.value) == "services.main.cpu is not a known field (field: services.main.cpu)"


def test_a_normal_service_needs_its_dockerfile(tmp_path):
    write(tmp_path / "paradrop.yaml", "name: built\nversion: 1\nservices:\n  web: {type: normal, source: web}\n")
    (tmp_path / "web").mkdir()
    with pytest.raises(ProjectError) as caught:
        check_project(tmp_path)
    assert caught.value.field == "services.web.dockerfile"
    assert "web/Dockerfile is missing" in str(caught.value)
    write(tmp_path / "web" / "Dockerfile", "FROM paradrop/busybox\n")
    assert check_project(tmp_path).services[0].type == "normal"


def test_a_service_source_outside_the_project_is_refused(tmp_path):
    write(tmp_path / "p" / "paradrop.yaml",
          "name: out\nversion: 1\nservices:\n  main: {type: light, image: busybox, command: x, source: ..}\n")
    with pytest.raises(ProjectError, match="points outside the project") as caught:
        check_project(tmp_path / "p")
    assert caught.value.field == "services.main.source"


def test_read_description_parses_as_the_node_does(tmp_path):
    write(tmp_path / "paradrop.yaml", BOMB)
    with pytest.raises(ProjectError, match="size budget") as caught:
        read_description(tmp_path)
    assert caught.value.field is None
    write(tmp_path / "paradrop.yaml", "name: x\nversion: 99999999999999999999\n")
    with pytest.raises(ProjectError, match="outside 64 bits") as caught:
        read_description(tmp_path)
    assert caught.value.field == "version"
