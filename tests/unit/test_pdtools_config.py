"""pdtools' token store and target URLs: where tokens go, who can read them, which token wins."""
import os
import stat

import pytest

from pdtools import config
from pdtools.errors import ConfigError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv(config.TOKEN_ENV, raising=False)
    return tmp_path / "home"


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(
    "given, expected",
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("node.local", "http://node.local"),
        ("http://10.0.0.1:8080/", "http://10.0.0.1:8080"),
        ("HTTPS://Node.Example:8443/paradrop/", "https://node.example:8443/paradrop"),
        ("  [::1]:8080 ", "http://[::1]:8080"),
    ],
)
def test_targets_are_normalized_to_one_base_url(given, expected):
    assert config.normalize_target(given) == expected


@pytest.mark.parametrize(
    "bad", ["ftp://node", "http://", "http://node:99999", "http://user:pw@node", "http://node/?x=1", "node:port"]
)
def test_targets_that_cannot_be_a_node_url_are_refused(bad):
    with pytest.raises(ValueError):
        config.normalize_target(bad)


def test_token_file_is_created_0600_in_a_0700_directory(home):
    previous = os.umask(0)  # a permissive umask must not widen the modes: they are given at creation
    try:
        config.save_token("127.0.0.1:8080", "secret-token")
    finally:
        os.umask(previous)

    path = home / ".config" / "pdtools" / "tokens.json"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert config.saved_token("http://127.0.0.1:8080/") == "secret-token"
    assert [p.name for p in path.parent.iterdir()] == ["tokens.json"]  # no temporary file left behind


def test_rewriting_replaces_a_too_open_file_with_a_0600_one(home):
    path = config.tokens_path()
    path.parent.mkdir(parents=True)
    path.write_text('{"tokens": {}}')
    path.chmod(0o644)
    config.save_token("http://a:1", "t")
    assert mode(path) == 0o600


def test_xdg_config_home_is_honoured(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config.save_token("http://a:1", "t")
    assert (tmp_path / "xdg" / "pdtools" / "tokens.json").exists()
    assert not (home / ".config").exists()


def test_a_relative_xdg_config_home_is_ignored(home, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")
    assert config.config_dir() == home / ".config" / "pdtools"


def test_tokens_are_kept_per_node_and_forgotten_one_by_one(home):
    config.save_token("http://a:1", "token-a")
    config.save_token("http://b:2", "token-b")
    assert config.forget_token("a:1") is True
    assert config.forget_token("a:1") is False
    assert config.saved_token("http://a:1") is None
    assert config.saved_token("http://b:2") == "token-b"


def test_paradrop_api_token_overrides_the_saved_token(home, monkeypatch):
    config.save_token("http://a:1", "saved")
    assert config.current_token("http://a:1") == "saved"
    monkeypatch.setenv(config.TOKEN_ENV, "from-env")
    assert config.current_token("http://a:1") == "from-env"
    assert config.current_token("http://never-logged-in:1") == "from-env"


def test_a_corrupt_token_file_is_a_clear_error(home):
    path = config.tokens_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="delete it and log in again"):
        config.saved_token("http://a:1")
