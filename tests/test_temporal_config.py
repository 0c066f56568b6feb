"""Where Temporal is: temporalio.envconfig's profile file and variables (shared with the `temporal` CLI), our legacy
TLS variables for one release, our defaults; and drctl reaching the dev server through a profile file alone."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import structlog
from temporalio.service import TLSConfig

from tests.cli_helpers import DRCTL, cli_env
from workers.main import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, TemporalSettings
from contracts.lifecycle import DEFAULT_TASK_QUEUE

PROFILES = """
[profile.default]
address = "file-default.example:7233"
namespace = "from-file"

[profile.prod]
address = "prod.example:7233"
namespace = "dr"
api_key = "file-key"

[profile.prod.grpc_meta]
x-team = "dr"
"""


@pytest.fixture
def clean_env(monkeypatch, tmp_path) -> Path:
    """No TEMPORAL_* variable of the runner's leaks in; the profile file is one of the test's (not yet written)."""
    for name in list(os.environ):
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)
    config = tmp_path / "temporal.toml"
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    return config


def test_without_a_file_or_variables_the_defaults_are_a_local_dev_server(clean_env):
    settings = TemporalSettings.from_env()
    assert (settings.address, settings.namespace, settings.task_queue) == (
        DEFAULT_ADDRESS, DEFAULT_NAMESPACE, DEFAULT_TASK_QUEUE) == ("127.0.0.1:7233", "default", DEFAULT_TASK_QUEUE)
    assert settings.connect_config() == {"target_host": "127.0.0.1:7233", "namespace": "default"}


def test_the_profile_file_and_temporal_profile_choose_the_profile(clean_env, monkeypatch):
    clean_env.write_text(PROFILES)
    settings = TemporalSettings.from_env()
    assert (settings.address, settings.namespace) == ("file-default.example:7233", "from-file")
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    config = TemporalSettings.from_env().connect_config()
    # An API key without TLS settings means TLS with the system roots (the SDK's rule, and ours before it).
    assert config == {"target_host": "prod.example:7233", "namespace": "dr", "api_key": "file-key", "tls": True,
                      "rpc_metadata": {"x-team": "dr"}}


def test_variables_override_the_profile_file(clean_env, monkeypatch):
    clean_env.write_text(PROFILES)
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "env.example:7233")
    monkeypatch.setenv("TEMPORAL_API_KEY", "env-key")
    monkeypatch.setenv("TEMPORAL_TASK_QUEUE", "our-queue")
    settings = TemporalSettings.from_env()
    assert (settings.address, settings.namespace, settings.task_queue) == ("env.example:7233", "dr", "our-queue")
    assert settings.connect_config()["api_key"] == "env-key"
    assert "env-key" not in repr(settings)


def test_an_unknown_profile_is_an_error(clean_env, monkeypatch):
    clean_env.write_text(PROFILES)
    monkeypatch.setenv("TEMPORAL_PROFILE", "nope")
    with pytest.raises(Exception, match="nope"):
        TemporalSettings.from_env()


def _pem_files(tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "ca", "new-cert")}
    for name, path in files.items():
        path.write_text(f"-- {name} --")
    return files


def test_legacy_tls_variables_map_onto_envconfig_with_one_warning(clean_env, monkeypatch, tmp_path):
    pem = _pem_files(tmp_path)
    monkeypatch.setenv("TEMPORAL_TLS_CERT", str(pem["cert"]))
    monkeypatch.setenv("TEMPORAL_TLS_KEY", str(pem["key"]))
    monkeypatch.setenv("TEMPORAL_TLS_CA", str(pem["ca"]))
    with structlog.testing.capture_logs() as logs:
        settings = TemporalSettings.from_env()
    assert [(e["event"], e["log_level"]) for e in logs] == [("temporal.config.deprecated_variables", "warning")]
    assert logs[0]["use_instead"] == {"TEMPORAL_TLS_CERT": "TEMPORAL_TLS_CLIENT_CERT_PATH",
                                      "TEMPORAL_TLS_KEY": "TEMPORAL_TLS_CLIENT_KEY_PATH",
                                      "TEMPORAL_TLS_CA": "TEMPORAL_TLS_SERVER_CA_CERT_PATH"}
    tls = settings.connect_config()["tls"]
    assert isinstance(tls, TLSConfig)
    assert (tls.client_cert, tls.client_private_key, tls.server_root_ca_cert) == (b"-- cert --", b"-- key --",
                                                                                  b"-- ca --")


def test_the_new_tls_variable_wins_over_the_legacy_one(clean_env, monkeypatch, tmp_path):
    pem = _pem_files(tmp_path)
    monkeypatch.setenv("TEMPORAL_TLS_CERT", str(pem["cert"]))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(pem["new-cert"]))
    with structlog.testing.capture_logs() as logs:
        tls = TemporalSettings.from_env().connect_config()["tls"]
    assert isinstance(tls, TLSConfig) and tls.client_cert == b"-- new-cert --"
    assert len(logs) == 1 and logs[0]["use_instead"] == {"TEMPORAL_TLS_CERT": "TEMPORAL_TLS_CLIENT_CERT_PATH"}


def test_no_tls_and_no_warning_without_tls_settings(clean_env, monkeypatch):
    monkeypatch.setenv("TEMPORAL_ADDRESS", "plain.example:7233")
    with structlog.testing.capture_logs() as logs:
        config = TemporalSettings.from_env().connect_config()
    assert "tls" not in config and not logs


async def test_drctl_reaches_the_dev_server_through_a_profile_file(temporal_env, tmp_path):
    config = tmp_path / "temporal.toml"
    address = temporal_env.client.service_client.config.target_host
    config.write_text(f'[profile.drill]\naddress = "{address}"\nnamespace = "default"\n')
    env = {k: v for k, v in {**os.environ, **cli_env(temporal_env)}.items() if not k.startswith("TEMPORAL_")}
    env.update(TEMPORAL_CONFIG_FILE=str(config), TEMPORAL_PROFILE="drill")
    process = await asyncio.create_subprocess_exec(
        DRCTL, "drill", "list", "-o", "json", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert out.decode().lstrip().startswith("[")
    # A profile the file lacks is a one-line error, not a traceback.
    env["TEMPORAL_PROFILE"] = "missing"
    process = await asyncio.create_subprocess_exec(
        DRCTL, "drill", "list", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert (process.returncode, out) == (1, b"")
    assert err.decode().startswith("error: cannot read the Temporal connection configuration") and b"missing" in err
