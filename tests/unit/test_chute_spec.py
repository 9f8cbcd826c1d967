"""paradrop.yaml: both forms, validation errors that name the field, versions, safe unpacking."""
import io
import tarfile

import pytest

from pdserver.chutes.source import SourceError, extract_project
from pdserver.chutes.spec import SpecError, build, load_yaml
from pdserver.chutes.versions import is_newer

MULTI = """
name: hello-web
version: 2
description: says hi
environment: {GREETING: hi}
web: {service: main, port: 8000}
services:
  main:
    type: light
    image: python3
    command: python3 -m http.server 8000
    environment: {MODE: prod, DEBUG: false}
    requests:
      port-bindings: [{external: 8001, internal: 8000}]
      cpu-fraction: 0.5
      memory: 64M
  db:
    type: image
    image: paradrop/busybox:latest
    command: [sleep, "3600"]
"""


def test_multi_service_form_is_normalised():
    chute = build(load_yaml(MULTI))
    assert chute.name == "hello-web" and chute.version == "2"
    assert [s.name for s in chute.services] == ["db", "main"]
    main = chute.service("main")
    assert main.memory == 64 * 1024 * 1024 and main.cpu_fraction == 0.5
    assert main.port_bindings[0].external == 8001
    assert dict(main.environment) == {"MODE": "prod", "DEBUG": "false"}
    assert chute.service("db").command == ("sleep", "3600")
    assert chute.web_service == "main" and chute.web_port == 8000


def test_legacy_single_service_form_becomes_service_main():
    chute = build(load_yaml("""
name: old-style
version: 1
type: light
use: python2
command: python -u main.py
config:
  web: {port: 5000}
  environment: {A: b}
  host_config: {port_bindings: {"5000/tcp": 8080}}
"""))
    main = chute.service("main")
    assert main.type == "light" and main.image == "python3"
    assert main.port_bindings[0].internal == 5000 and main.port_bindings[0].external == 8080
    assert chute.web_port == 5000 and chute.web_service == "main"


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["services"]["main"]["requests"]["port-bindings"][0].update(external="x"),
     "services.main.requests.port-bindings[0].external"),
    (lambda d: d.update(name="Bad_Name"), "name"),
    (lambda d: d["services"]["main"].update(image="ruby"), "services.main.image"),
    (lambda d: d["services"]["main"].pop("command"), "services.main.command"),
    (lambda d: d["services"]["main"].update(colour="red"), "services.main.colour"),
    (lambda d: d.update(web={"service": "nope", "port": 80}), "web.service"),
    (lambda d: d["services"]["db"].update(requests={"port-bindings": [{"external": 8001, "internal": 1}]}),
     "services.db.requests.port-bindings[0].external"),
])
def test_errors_name_the_field(mutate, field):
    data = load_yaml(MULTI)
    mutate(data)
    with pytest.raises(SpecError) as info:
        build(data)
    assert info.value.field == field, info.value.message


def test_versions_compare_numerically_when_numeric():
    assert is_newer("10", "9")
    assert is_newer("1.10", "1.9")
    assert not is_newer("2", "2")
    assert is_newer("2.0.1", "2.0")


def tar_of(files, links=()):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    buf.seek(0)
    return buf


def test_a_project_unpacks_and_a_top_level_folder_is_accepted(tmp_path):
    root = extract_project(tar_of({"paradrop.yaml": b"x", "src/app.py": b"print(1)"}), tmp_path / "a", 10 ** 6)
    assert (root / "src/app.py").read_bytes() == b"print(1)"
    root = extract_project(tar_of({"proj/paradrop.yaml": b"x"}), tmp_path / "b", 10 ** 6)
    assert root == tmp_path / "b" and (root / "paradrop.yaml").is_file()


@pytest.mark.parametrize("files, links, reason", [
    ({"paradrop.yaml": b"x", "../evil": b"x"}, (), "outside"),
    ({"paradrop.yaml": b"x", "/etc/evil": b"x"}, (), "outside"),
    ({"paradrop.yaml": b"x"}, [("link", "../../etc/passwd")], "outside"),
    ({"paradrop.yaml": b"x"}, [("link", "/etc/passwd")], "outside"),
    ({"paradrop.yaml": b"x" * 2000}, (), "larger"),
    ({"README": b"x"}, (), "paradrop.yaml"),
])
def test_bad_archives_are_refused_and_leave_nothing(tmp_path, files, links, reason):
    with pytest.raises(SourceError, match=reason):
        extract_project(tar_of(files, links), tmp_path / "x", 1000)
    assert not (tmp_path / "x").exists()


def test_garbage_is_not_an_archive(tmp_path):
    with pytest.raises(SourceError, match="not a tar"):
        extract_project(io.BytesIO(b"this is not a tar file at all" * 100), tmp_path / "x", 1000)
