"""The crossbar config the controller writes (embedded) and prints (a router run on its own)."""
import json

import pytest
from click.testing import CliRunner

from pdserver.controller.router import WORKER_DIR, router_config
from pdserver.controller.router_worker import paradrop_router
from pdserver.main import cli


def _endpoint(config):
    return config["workers"][0]["transports"][0]["endpoint"]


def _ticket(config):
    return config["workers"][0]["transports"][0]["paths"]["ws"]["auth"]["ticket"]["principals"]["controller"]["ticket"]


def test_the_ticket_is_a_long_secret_or_a_reference_to_crossbars_environment():
    assert _ticket(router_config("127.0.0.1", 9086, "x" * 16)) == "x" * 16
    assert _ticket(router_config("127.0.0.1", 9086, "${TICKET}")) == "${TICKET}"
    for bad in ("short", "$TICKET", "${}", "${A B}", None, 16 * 3):
        with pytest.raises(ValueError):
            router_config("127.0.0.1", 9086, bad)


def test_tls_makes_the_endpoint_serve_wss_with_the_key_and_certificate_given():
    plain = router_config("0.0.0.0", 443, "x" * 16)
    assert "tls" not in _endpoint(plain)
    secure = router_config("0.0.0.0", 443, "x" * 16, tls=("key.pem", "cert.pem"))
    assert _endpoint(secure)["tls"] == {"key": "key.pem", "certificate": "cert.pem"}


def test_router_config_prints_a_config_without_a_secret_and_checks_its_options():
    runner = CliRunner()
    result = runner.invoke(cli, ["router-config", "--host", "10.0.0.1", "--port", "9443", "--tls-key", "k.pem",
                                 "--tls-cert", "c.pem"])
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    assert _endpoint(config)["interface"] == "10.0.0.1" and _endpoint(config)["port"] == 9443
    assert _ticket(config) == "${PARADROP_CONTROLLER_TICKET}"
    result = runner.invoke(cli, ["router-config", "--tls-key", "k.pem"])
    assert result.exit_code == 2 and "--tls-key and --tls-cert go together" in result.output


def test_the_router_worker_runs_our_component_from_the_path_given_under_a_role_that_may_only_register_its_own():
    embedded = router_config("127.0.0.1", 9086, "x" * 16)
    (worker,) = embedded["workers"]
    assert worker["options"]["pythonpath"] == [str(WORKER_DIR)]
    assert (WORKER_DIR / "paradrop_router.py").is_file()
    assert worker["components"] == [{"type": "class", "classname": "paradrop_router.RouterWorker",
                                     "realm": "paradrop", "role": paradrop_router.ROLE}]
    roles = {role["name"]: role for role in worker["realms"][0]["roles"]}
    (permission,) = roles[paradrop_router.ROLE]["permissions"]
    assert permission["uri"] == paradrop_router.ROUTER_PREFIX and permission["match"] == "prefix"
    assert permission["allow"] == {"call": False, "register": True, "publish": False, "subscribe": False}
    assert paradrop_router.GC_PROCEDURE.startswith(paradrop_router.ROUTER_PREFIX)
    printed = json.loads(CliRunner().invoke(cli, ["router-config"]).output)
    assert printed["workers"][0]["options"]["pythonpath"] == ["router_worker"]  # tools/crossbar's link
    elsewhere = json.loads(CliRunner().invoke(cli, ["router-config", "--worker-path", "/opt/pd/rw"]).output)
    assert elsewhere["workers"][0]["options"]["pythonpath"] == ["/opt/pd/rw"]
