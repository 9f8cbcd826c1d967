"""The crossbar config the controller writes (embedded) and prints (a router run on its own)."""
import json

import pytest
from click.testing import CliRunner

from pdserver.controller.router import router_config
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
