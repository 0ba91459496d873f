"""TernSettings in sections: the nested TERN_<SECTION>__<FIELD> names set every field, the TOML file takes [section]
tables, precedence is kwargs > env > file > defaults, errors name the setting and its environment variable, and a
retired flat name of Tern 0.1 (environment or file) fails naming its new name. Each test builds TernSettings in a
clean environment (no TERN_ variable
of the caller leaks in) and, for the CLI, runs the real `tern` entry point in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from tern.config import RetiredSettingName, TernSettings, retired_names, setting_error

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TERN_ variable of the caller, and no ./tern.toml: each test sets what it reads."""
    for name in list(os.environ):
        if name.upper().startswith("TERN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TERN_CONFIG", str(tmp_path / "absent.toml"))


def test_nested_environment_names_set_their_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERN_DATABASE__PG_PORT", "55999")
    monkeypatch.setenv("TERN_TEMPORAL__ADDRESS", "10.0.0.1:7999")
    monkeypatch.setenv("TERN_APPROVAL__APPROVERS", '["alice", "bob"]')
    monkeypatch.setenv("TERN_SANDBOX__TIMEOUT_S", "12.5")
    monkeypatch.setenv("TERN_SIM__SLOW_READBACKS", '{"SR:RF:FREQ:SP": 2}')
    monkeypatch.setenv("TERN_ARIEL__BACKEND", "postgres")
    monkeypatch.setenv("TERN_ARIEL__EMBEDDING_MODEL", "e-nested")
    monkeypatch.setenv("TERN_TEMPORAL__TASK_QUEUE", "q-nested")
    monkeypatch.setenv("TERN_APPROVAL__PYTHON_MODE", "control_writes")
    s = TernSettings()
    assert s.database.pg_port == 55999
    assert s.dsn == "postgresql://postgres@127.0.0.1:55999/tern"
    assert s.temporal.address == "10.0.0.1:7999" and s.ui_url == "http://10.0.0.1:8233"
    assert s.approval.approvers == ["alice", "bob"]
    assert s.sandbox.timeout_s == 12.5
    assert s.sim.slow_readbacks == {"SR:RF:FREQ:SP": 2.0}
    assert s.ariel.embedding_model == "e-nested"
    assert s.temporal.task_queue == "q-nested"
    assert s.approval.python_mode == "control_writes"


SPECIAL: dict[str, tuple[str, object]] = {
    "facility_timezone": ("Europe/Berlin", "Europe/Berlin"),  # must be an IANA zone
    "opensearch_ef_search": ("7", 7),  # int, unset by default
    "opensearch_ca_certs": ("/tmp/ca.pem", Path("/tmp/ca.pem")),
    "opensearch_client_cert": ("/tmp/cert.pem", Path("/tmp/cert.pem")),
    "opensearch_client_key": ("/tmp/key.pem", Path("/tmp/key.pem")),
    "logbook_publish_client_cert": ("/tmp/elogcert.pem", Path("/tmp/elogcert.pem")),
    "webhook_secrets": ('{"k": "s3cret-of-16-chars"}', {"k": SecretStr("s3cret-of-16-chars")}),  # 16+ characters
    "webhook_notify_key_id": ("out", "out"),  # must not be a key of webhook_secrets
    "webhook_notify_secret": ("notify-s3cret-16+", "notify-s3cret-16+"),  # 16+ characters, unlike the inbound ones
    "slack_app_token": ("xapp-1-A1-x", "xapp-1-A1-x"),  # must be an app-level token
    "mcp_token": ("x-mcp-token-of-16+chars", "x-mcp-token-of-16+chars"),  # at least 16 characters
    "oidc_issuer": ("https://sso.example.org/realms/x", "https://sso.example.org/realms/x"),  # https only
    "oidc_scope": ("openid x", "openid x"),  # must include openid
    "approval_identity": ("proven", "proven"),  # declared or proven
    "llm_schema_field": ("guided_json", "guided_json"),  # one of three dialects
}


def _other_value(flat: str, value: object) -> tuple[str, object]:
    """An environment text for a setting other than its default, and the value it must give."""
    if flat in SPECIAL:
        return SPECIAL[flat]
    if isinstance(value, bool):
        return str(not value).lower(), not value
    if isinstance(value, int):
        return str(value + 1), value + 1
    if isinstance(value, float):
        return str(value + 0.5), value + 0.5
    if isinstance(value, list):
        return '["x"]', ["x"]
    if isinstance(value, dict):
        return '{"x": 1}', {"x": 1.0}
    if isinstance(value, Path) or flat.endswith("_path"):
        return f"/tmp/{flat}", Path(f"/tmp/{flat}")
    if flat == "temporal_address":
        return "h-x:1", "h-x:1"
    return f"x-{flat}", f"x-{flat}"


LITERALS = {"small_change_verification", "python_approval_mode", "sandbox_backend", "ariel_backend"}
LITERALS |= {"embedding_provider", "llm_provider", "log_format", "opensearch_aws_service", "memory_approval_mode"}
LITERALS |= {"opensearch_aws_region", "worker_promote_on_start"}  # excludes opensearch_username (basic auth), set here


def test_every_nested_name_sets_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """All the settings at once by their TERN_<SECTION>__<FIELD> names (but the choices), each to a value other
    than its default: each lands in its field. (Keyed by the retired flat name, unique across sections.)"""
    defaults = TernSettings()
    expected = {}
    for flat, (section, field) in retired_names().items():
        if flat in LITERALS:
            continue  # their other choices need other settings; test_nested_environment_names_set_their_fields sets one
        text, value = _other_value(flat, getattr(getattr(defaults, section), field))
        monkeypatch.setenv(f"TERN_{section.upper()}__{field.upper()}", text)
        expected[(section, field)] = value
    s = TernSettings()
    got = {}
    for section, field in expected:
        value = getattr(getattr(s, section), field)
        got[(section, field)] = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    assert got == expected
    assert len(expected) == len(retired_names()) - len(LITERALS) == 183 - 11


def test_a_retired_flat_name_fails_naming_its_new_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tern 0.1's flat names are not read: one that is set (any case) fails, naming each new name, rather than
    being ignored (a deployment would silently run on the defaults)."""
    monkeypatch.setenv("TERN_SANDBOX__TIMEOUT_S", "7")
    assert TernSettings().sandbox.timeout_s == 7.0
    monkeypatch.setenv("TERN_SANDBOX_TIMEOUT_S", "9")
    monkeypatch.setenv("tern_pg_port", "55111")
    with pytest.raises(RetiredSettingName) as info:
        TernSettings()
    assert str(info.value) == (
        "TERN_SANDBOX_TIMEOUT_S is no longer read: set TERN_SANDBOX__TIMEOUT_S; "
        "tern_pg_port is no longer read: set TERN_DATABASE__PG_PORT"
    )
    for flat, (section, field) in retired_names().items():  # every one of them, each alone
        monkeypatch.delenv("TERN_SANDBOX_TIMEOUT_S", raising=False)
        monkeypatch.delenv("tern_pg_port", raising=False)
        with monkeypatch.context() as m:
            m.setenv(f"TERN_{flat.upper()}", "1")
            with pytest.raises(RetiredSettingName, match=f"set TERN_{section.upper()}__{field.upper()}$"):
                TernSettings()


def test_toml_sections_and_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = tmp_path / "tern.toml"
    toml.write_text(
        "[database]\npg_port = 55222\n\n[sandbox]\ntimeout_s = 33\ncpus = 3.0\n\n"
        '[temporal]\nnamespace = "ops"\n[control]\nwrites_enabled = true\n'
    )
    monkeypatch.setenv("TERN_CONFIG", str(toml))
    s = TernSettings()
    assert s.database.pg_port == 55222
    assert s.sandbox.timeout_s == 33.0 and s.sandbox.cpus == 3.0
    assert s.temporal.namespace == "ops" and s.control.writes_enabled is True
    assert s.sandbox.pids == 64  # untouched fields keep their defaults
    monkeypatch.setenv("TERN_SANDBOX__TIMEOUT_S", "44")  # env over file
    monkeypatch.setenv("TERN_TEMPORAL__NAMESPACE", "env-ns")
    s = TernSettings()
    assert s.sandbox.timeout_s == 44.0 and s.sandbox.cpus == 3.0 and s.temporal.namespace == "env-ns"
    s = TernSettings(sandbox={"timeout_s": 55}, database={"url": "postgresql://x@h/db"})  # kwargs over env, merged
    assert s.sandbox.timeout_s == 55.0 and s.sandbox.cpus == 3.0 and s.temporal.namespace == "env-ns"
    assert s.dsn == "postgresql://x@h/db" and s.database.pg_port == 55222


def test_a_retired_flat_key_at_the_top_of_the_file_fails_naming_its_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    toml = tmp_path / "tern.toml"
    toml.write_text('pg_port = 55222\nsandbox_cpus = 2.0\ndata_dir = "/tmp/x"\n\n[sandbox]\ntimeout_s = 33\n')
    monkeypatch.setenv("TERN_CONFIG", str(toml))
    with pytest.raises(RetiredSettingName) as info:
        TernSettings()
    assert str(info.value) == (
        f"pg_port (top level of {toml}) is no longer read: put it in [database] as pg_port; "
        f"sandbox_cpus (top level of {toml}) is no longer read: put it in [sandbox] as cpus"
    )


def test_bad_value_names_the_setting_and_its_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERN_SANDBOX__TIMEOUT_S", "soon")
    with pytest.raises(ValidationError) as info:
        TernSettings()
    assert [e["loc"] for e in info.value.errors()] == [("sandbox", "timeout_s")]
    assert setting_error(info.value).startswith(
        "sandbox.timeout_s (TERN_SANDBOX__TIMEOUT_S): Input should be a valid number"
    )
    monkeypatch.setenv("TERN_SANDBOX__TIMEOUT_S", "10")
    monkeypatch.setenv("TERN_APPROVAL__APPROVERS", "alice")  # not JSON
    with pytest.raises(ValueError) as bad_json:
        TernSettings()
    assert str(bad_json.value).startswith(
        "approval.approvers (TERN_APPROVAL__APPROVERS): not valid JSON (Expecting value: line 1 column 1 (char 0))"
    )
    monkeypatch.setenv("TERN_APPROVAL__APPROVERS", '"alice"')  # JSON, but not a list
    with pytest.raises(ValidationError) as info:
        TernSettings()
    assert setting_error(info.value) == "approval.approvers (TERN_APPROVAL__APPROVERS): Input should be a valid list"


def test_slack_app_token_must_be_an_app_level_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERN_CHAT__SLACK_APP_TOKEN", "xoxb-the-bot-token")  # the usual mix-up
    with pytest.raises(ValidationError) as info:
        TernSettings()
    assert setting_error(info.value) == (
        "chat.slack_app_token (TERN_CHAT__SLACK_APP_TOKEN): Value error, must be a Slack app-level token (xapp-...)"
    )
    monkeypatch.setenv("TERN_CHAT__SLACK_APP_TOKEN", "xapp-1-A1-abc")
    assert TernSettings().chat.slack_app_token.get_secret_value() == "xapp-1-A1-abc"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TERN_CHAT__WEBHOOK_SECRETS": '{"ops-bot": ""}'}, "webhook key id 'ops-bot' must be at least 16 characters"),
        (
            {"TERN_CHAT__WEBHOOK_SECRETS": '{"ops-bot": "short"}'},
            "webhook key id 'ops-bot' must be at least 16 characters",
        ),
        ({"TERN_CHAT__WEBHOOK_NOTIFY_SECRET": "short"}, "webhook_notify_secret must be at least 16 characters"),
        ({"TERN_CHAT__WEBHOOK_NOTIFY_URLS": '["http://127.0.0.1:9/hook"]'}, "need webhook_notify_secret"),
        (
            {"TERN_CHAT__WEBHOOK_SECRETS": '{"out": "0123456789abcdef"}', "TERN_CHAT__WEBHOOK_NOTIFY_KEY_ID": "out"},
            "webhook_notify_key_id 'out' is a key of webhook_secrets",
        ),
        (
            {
                "TERN_CHAT__WEBHOOK_SECRETS": '{"ops": "0123456789abcdef"}',
                "TERN_CHAT__WEBHOOK_NOTIFY_SECRET": "0123456789abcdef",
            },
            "webhook_notify_secret equals the secret of webhook key id 'ops'",
        ),
    ],
)
def test_webhook_secrets_are_long_and_the_notification_secret_is_separate(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    """Issue 22: an empty or short webhook secret is refused at load naming its key id (never the secret);
    outbound notifications need their own secret, which may not be an inbound one."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError) as info:
        TernSettings()
    message = setting_error(info.value)
    assert expected in message and "0123456789abcdef" not in message and "'short'" not in message


def test_cli_names_the_new_name_of_a_retired_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TERN_")}
    env |= {"TERN_CONFIG": str(tmp_path / "absent.toml"), "TERN_DATA_DIR": str(tmp_path), "TERN_PG_PORT": "5432"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "starters.cli", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "bad configuration: TERN_PG_PORT is no longer read: set TERN_DATABASE__PG_PORT" in proc.stderr, proc.stderr


def test_cli_names_the_bad_environment_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TERN_")}
    env |= {"TERN_CONFIG": str(tmp_path / "absent.toml"), "TERN_DATA_DIR": str(tmp_path)}
    env["TERN_DATABASE__PG_PORT"] = "many"
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "starters.cli", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "bad configuration: database.pg_port (TERN_DATABASE__PG_PORT)" in proc.stderr, proc.stderr


def test_unknown_names_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        TernSettings(pg_port=1)  # type: ignore[call-arg]  # the old flat keyword: a section dict now
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [(("pg_port",), "extra_forbidden")]
    with pytest.raises(ValidationError) as info:
        TernSettings(sandbox={"timeout": 5})
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [(("sandbox", "timeout"), "extra_forbidden")]
    toml = tmp_path / "tern.toml"
    toml.write_text("[sandbox]\ntimeout_secs = 5\n")
    monkeypatch.setenv("TERN_CONFIG", str(toml))
    with pytest.raises(ValidationError) as info:
        TernSettings()
    assert [e["loc"] for e in info.value.errors()] == [("sandbox", "timeout_secs")]
    toml.write_text("pg_prot = 5\n")
    with pytest.raises(ValidationError) as info:
        TernSettings()
    assert [e["loc"] for e in info.value.errors()] == [("pg_prot",)]
