"""Settings: env parsing, TOML, validation messages that name the setting, secrets hidden."""

from __future__ import annotations

import pytest

from config import SettingsError, load_settings
from config.settings import describe, iter_fields


def test_defaults_are_safe():
    s = load_settings({})
    assert s.host == "127.0.0.1" and s.port == 8080
    assert s.database_url is None and s.redis_url is None
    assert s.cors_origins == () and s.trusted_proxies == ()


def test_env_values_are_typed():
    s = load_settings({"FOYER_PORT": "9000", "FOYER_CORS_ORIGINS": "https://a.org, https://b.org",
                       "FOYER_LOG_JSON": "yes", "FOYER_HOLD_SECONDS": "120"})
    assert s.port == 9000 and s.cors_origins == ("https://a.org", "https://b.org")
    assert s.log_json is True and s.tickets.hold_seconds == 120


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FOYER_PORT": "eighty"}, "FOYER_PORT: expected an integer"),
        ({"FOYER_PORT": "70000"}, "FOYER_PORT: must be between"),
        ({"FOYER_LOG_JSON": "maybe"}, "FOYER_LOG_JSON: expected true/false"),
        ({"FOYER_PROT": "1"}, "FOYER_PROT: unknown setting"),
        ({"FOYER_TRUSTED_PROXIES": "not-an-ip"}, "FOYER_TRUSTED_PROXIES"),
        ({"FOYER_JWT_SECRET": "short"}, "FOYER_JWT_SECRET: must be at least 32 bytes"),
        ({"FOYER_DATABASE_URL": "mysql://x"}, "FOYER_DATABASE_URL"),
        ({"FOYER_EVENT_LOOP": "tokio"}, "FOYER_EVENT_LOOP: expected fair or uvloop"),
        ({"FOYER_LOOP_MAX_EVENTS": "0"}, "FOYER_LOOP_MAX_EVENTS: must be between"),
    ],
)
def test_bad_values_name_the_setting(env, message):
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert message in str(info.value)


def test_toml_file_and_sections(tmp_path):
    path = tmp_path / "foyer.toml"
    path.write_text('port = 9100\n[tickets]\nhold_seconds = 300\n')
    s = load_settings({"FOYER_CONFIG": str(path)})
    assert s.port == 9100 and s.tickets.hold_seconds == 300
    # env wins over the file
    assert load_settings({"FOYER_CONFIG": str(path), "FOYER_PORT": "9200"}).port == 9200


def test_secret_from_file_and_hidden_in_repr(tmp_path):
    secret_file = tmp_path / "jwt"
    secret_file.write_text("s" * 40 + "\n")
    s = load_settings({"FOYER_JWT_SECRET_FILE": str(secret_file), "FOYER_DATABASE_URL": "postgresql://u:pw@h/db"})
    assert str(s.auth.jwt_secret) == "s" * 40
    assert "s" * 40 not in repr(s) and "pw@" not in repr(s)


def test_setting_names_are_unique_and_documented():
    names = [f.name for _, f, _ in iter_fields()]
    assert len(names) == len(set(names))
    assert all(row["help"] for row in describe())


def test_readme_documents_every_setting():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [row["env"] for row in describe() if f"`{row['env']}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}: run `python run.py settings --markdown`"
