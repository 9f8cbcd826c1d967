"""`pdtools chute init`, `validate` and `convert`: local authoring, no node."""
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pdserver.chutes.spec import build
from pdtools.main import pdtools
from pdtools.templates import default_name


def run(*args):
    return CliRunner().invoke(pdtools, ["chute", *args], catch_exceptions=False)


@pytest.mark.parametrize("options, files, image", [
    ((), ["app.py", "paradrop.yaml", "www/index.html"], "python3"),
    (("--image", "node"), ["paradrop.yaml", "server.js", "www/index.html"], "node"),
    (("--image", "busybox"), ["paradrop.yaml", "www/index.html"], "busybox"),
    (("--type", "image"), ["paradrop.yaml"], "paradrop/python3:latest"),
])
def test_init_writes_a_project_that_validates(tmp_path, options, files, image):
    result = run("init", str(tmp_path / "hello-web"), *options)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Wrote chute hello-web in {tmp_path / 'hello-web'}: {', '.join(files)}\n")
    written = sorted(p.relative_to(tmp_path / "hello-web").as_posix()
                     for p in (tmp_path / "hello-web").rglob("*") if p.is_file())
    assert written == files

    spec = build(yaml.safe_load((tmp_path / "hello-web" / "paradrop.yaml").read_text()))
    assert (spec.name, spec.version, spec.web_port) == ("hello-web", "1", 8000)
    assert spec.services[0].image == image
    assert [(b.external, b.internal) for b in spec.services[0].port_bindings] == [(8000, 8000)]

    result = run("validate", str(tmp_path / "hello-web"))
    assert result.exit_code == 0, result.output
    assert "chute hello-web version 1 is valid; services: main (" in result.stdout


def test_init_takes_the_name_and_host_port_and_defaults_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("init", "--name", "my-chute", "--host-port", "18080")
    assert result.exit_code == 0, result.output
    spec = build(yaml.safe_load((tmp_path / "paradrop.yaml").read_text()))
    assert spec.name == "my-chute"
    assert spec.services[0].port_bindings[0].external == 18080


def test_an_image_chute_of_another_image_runs_it_as_it_is(tmp_path):
    assert run("init", str(tmp_path), "--name", "other", "--type", "image", "--image", "nginx:1.25").exit_code == 0
    spec = build(yaml.safe_load((tmp_path / "paradrop.yaml").read_text()))
    assert (spec.services[0].image, spec.services[0].command, spec.web_port) == ("nginx:1.25", None, None)


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("mine")
    result = run("init", str(tmp_path), "--name", "hello")
    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path} already has www/index.html: refusing to overwrite\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["index.html", "www"]
    assert (tmp_path / "www" / "index.html").read_text() == "mine"


@pytest.mark.parametrize("options, message", [
    (("--name", "Bad_Name"), "'Bad_Name' is no chute name"),
    (("--image", "alpine"), "a light chute is built on python3, busybox, node, not 'alpine'"),
])
def test_init_refuses_what_the_node_would_refuse(tmp_path, options, message):
    result = run("init", str(tmp_path / "x"), *options)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "x").exists()


def test_a_chute_name_is_made_from_the_directory_name():
    assert default_name("My Chute_2") == "my-chute-2"
    assert default_name("2fast") == "fast"
    assert default_name("___") is None


@pytest.mark.parametrize("services, field, message", [
    ("main: {type: light, image: python3, command: x, requests: {port-bindings: [{external: 70000, internal: 80}]}}",
     "services.main.requests.port-bindings[0].external", "70000 is greater than the maximum of 65535"),
    ("main: {type: light, image: python3}", "services.main.command", "services.main.command is required"),
    ("main: {type: light, image: ruby, command: x}", "services.main.image",
     "no light base 'ruby'; its bases are python3, node, busybox"),
    ("main: {type: image, image: busybox, colour: red}", "services.main.colour", "is not a known field"),
])
def test_validate_prints_the_error_naming_its_field_and_exits_1(tmp_path, services, field, message):
    (tmp_path / "paradrop.yaml").write_text(f"name: broken\nversion: 1\nservices:\n  {services}\n")
    result = run("validate", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {tmp_path / 'paradrop.yaml'}: ")
    assert field in result.stderr and message in result.stderr


def test_validate_accepts_the_legacy_single_service_form(tmp_path):
    (tmp_path / "paradrop.yaml").write_text(
        "name: old-style\nversion: 3\ntype: light\nuse: python3\ncommand: python3 app.py\n"
        "config:\n  web: {port: 5000}\n  host_config: {port_bindings: {5000: 18500}}\n")
    result = run("validate", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "chute old-style version 3 is valid; services: main (light python3)" in result.stdout


def test_validate_without_paradrop_yaml_or_with_bad_yaml(tmp_path):
    result = run("validate", str(tmp_path))
    assert result.exit_code == 1
    assert "no paradrop.yaml in" in result.stderr
    (tmp_path / "paradrop.yaml").write_text("name: [\n")
    result = run("validate", str(tmp_path))
    assert result.exit_code == 1
    assert "is not valid YAML" in result.stderr


LEGACY_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "paradrop-chutes"


def test_validate_prints_the_multi_service_form_of_a_legacy_project():
    result = run("validate", str(LEGACY_FIXTURES / "legacy-light-env-ports"))
    assert result.exit_code == 0, result.output
    printed = result.stdout.split("the node reads it as:\n", 1)[1]
    assert yaml.safe_load(printed)["services"]["main"]["environment"] == {"GREETING": "hello", "RETRIES": 3,
                                                                          "VERBOSE": True}
    assert build(yaml.safe_load(printed)) == build(yaml.safe_load(
        (LEGACY_FIXTURES / "legacy-light-env-ports" / "paradrop.yaml").read_text()))
    assert "reads it as" not in run("validate", str(LEGACY_FIXTURES / "multi-service")).stdout


def test_convert_writes_the_multi_service_form_and_keeps_the_original(tmp_path):
    project = shutil.copytree(LEGACY_FIXTURES / "legacy-hello-world", tmp_path / "hello")
    original = (project / "paradrop.yaml").read_text()
    result = run("convert", str(project))
    assert result.exit_code == 0, result.output
    assert (project / "paradrop.yaml.legacy").read_text() == original
    converted = yaml.safe_load((project / "paradrop.yaml").read_text())
    assert converted["services"] == {"main": {"type": "normal"}}
    assert converted["web"] == {"service": "main", "port": 80} and "summary" not in converted
    assert build(converted) == build(yaml.safe_load(original))
    assert run("validate", str(project)).exit_code == 0

    again = run("convert", str(project))
    assert again.exit_code == 0 and "multi-service form already" in again.stdout
    assert yaml.safe_load((project / "paradrop.yaml").read_text()) == converted


def test_convert_leaves_an_invalid_project_as_it_is(tmp_path):
    project = shutil.copytree(LEGACY_FIXTURES / "legacy-python2", tmp_path / "old")
    result = run("convert", str(project))
    assert result.exit_code == 1 and "python3, node, busybox" in result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["main.py", "paradrop.yaml"]
