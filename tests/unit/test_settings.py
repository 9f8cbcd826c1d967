"""Settings layering: defaults <- YAML file <- PARADROP_* environment <- command line."""
from pathlib import Path

import pytest

from pdserver.settings import SettingsError, load


def test_defaults_file_environment_and_flags_layer_in_that_order(tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text("port: 9000\ntoken-ttl: 60\nlog_level: debug\n")
    settings = load(config, environ={"PARADROP_PORT": "9100", "PARADROP_STATE_DIR": str(tmp_path)})
    assert settings.port == 9100
    assert settings.token_ttl == 60
    assert settings.log_level == "debug"
    assert settings.state_dir == tmp_path
    assert settings.host == "127.0.0.1"
    assert load(config, environ={"PARADROP_PORT": "9100"}, port=9200).port == 9200


def test_unknown_keys_and_bad_values_name_the_setting(tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text("colour: blue\n")
    with pytest.raises(SettingsError, match="colour"):
        load(config, environ={})
    with pytest.raises(SettingsError, match="port"):
        load(None, environ={"PARADROP_PORT": "eighty"})
    with pytest.raises(SettingsError, match="port"):
        load(None, environ={"PARADROP_PORT": "70000"})
    with pytest.raises(SettingsError, match="test_faults"):
        load(None, environ={"PARADROP_TEST_FAULTS": "maybe"})
    for nested in ("pdid: {a: 1}\n", "host: [127.0.0.1]\n", "state_dir: {x: y}\n"):
        config.write_text(nested)
        with pytest.raises(SettingsError, match="not a list or mapping"):
            load(config, environ={})


def test_the_admin_password_comes_only_from_the_environment_and_is_never_public(tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text("admin_password: hunter2hunter2\n")
    with pytest.raises(SettingsError, match="admin_password"):
        load(config, environ={})
    settings = load(None, environ={"PARADROP_ADMIN_PASSWORD": "hunter2hunter2"})
    assert settings.admin_password == "hunter2hunter2"
    assert "admin_password" not in settings.public()
    assert "hunter2" not in repr(settings)
    with pytest.raises(SettingsError, match="at least 8"):
        load(None, environ={"PARADROP_ADMIN_PASSWORD": "short"})


def test_state_dir_layout():
    settings = load(None, environ={}, state_dir=Path("/srv/pd"))
    assert settings.database_path == Path("/srv/pd/node.db")
    assert settings.secret_path == Path("/srv/pd/node-secret")
    assert settings.initial_password_path == Path("/srv/pd/initial-admin-password")


def test_connection_limits_are_settings_and_a_bad_one_is_named():
    settings = load(None, environ={"PARADROP_MAX_CONNECTIONS": "100", "PARADROP_HEADER_TIMEOUT": "2.5"})
    assert (settings.max_connections, settings.header_timeout) == (100, 2.5)
    assert (settings.max_connections_per_address, settings.idle_timeout) == (256, 60.0)
    assert load(None, environ={}).max_connections is None  # derived from the descriptor limit at start
    for name, value in [("header_timeout", "0"), ("idle_timeout", "-1"), ("max_connections_per_address", "0"),
                        ("max_connections", "0"), ("max_connections", "many")]:
        with pytest.raises(SettingsError, match=name):
            load(None, environ={"PARADROP_" + name.upper(): value})


def test_the_update_drain_is_a_setting_and_a_negative_one_is_named():
    assert load(None, environ={}).update_drain == 1.0
    assert load(None, environ={"PARADROP_UPDATE_DRAIN": "0.25"}).update_drain == 0.25
    with pytest.raises(SettingsError, match="update_drain"):
        load(None, environ={"PARADROP_UPDATE_DRAIN": "-1"})
