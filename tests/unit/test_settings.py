"""The settings read the environment, ``.env`` and their arguments as the pydantic-settings model they
replaced did: that library (a dev dependency) is the oracle, fed the same hostile values.

The oracle is built from :func:`shared.settings.specs` (types, defaults, constraints), with the model's two
validators as they were (comma-separated lists, the console operator token's length), so a setting added
to ``Settings`` is compared without a change here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import Field, SecretStr, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.settings import ENV_PREFIX, Secret, Settings, SettingsError, specs
from tests.support.depth import examples

SPECS = {spec.name: spec for spec in specs()}
LISTS = [name for name, spec in SPECS.items() if spec.annotation.startswith("list[")]
PYDANTIC_TYPES: dict[str, Any] = {
    "int": int, "float": float, "bool": bool, "str": str, "Path": Path, "Secret": SecretStr,
    "list[str]": Annotated[list[str], NoDecode], "list[Path]": Annotated[list[Path], NoDecode],
}


class _OracleBase(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    @field_validator(*LISTS, mode="before", check_fields=False)
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("console_operator_token", check_fields=False)
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("the console operator token must be at least 32 characters (a random secret)")
        return value


def _oracle_field(name: str) -> tuple[Any, Any]:
    spec = SPECS[name]
    base = spec.annotation.removesuffix(" | None")
    kind = PYDANTIC_TYPES[base] | None if base != spec.annotation else PYDANTIC_TYPES[base]
    constraints = dict(spec.declared.metadata)
    default = spec.default()
    if isinstance(default, list):
        return kind, Field(default_factory=lambda value=default: list(value), **constraints)
    return kind, Field(default=default, **constraints)


Oracle: type[BaseSettings] = create_model(  # type: ignore[call-overload]
    "Oracle", __base__=_OracleBase, **{name: _oracle_field(name) for name in SPECS})


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr | Secret):
        return ("secret", value.get_secret_value())
    return value


@contextlib.contextmanager
def _environment(env: Mapping[str, str], dotenv: str | None) -> Iterator[None]:
    """Only ``env`` among the JOBFORGE_ variables, in a working directory holding ``dotenv`` as ``.env``."""
    saved = dict(os.environ)
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as work:
        try:
            for key in [k for k in os.environ if k.lower().startswith(ENV_PREFIX.lower())]:
                del os.environ[key]
            os.environ.update(env)
            os.chdir(work)
            if dotenv is not None:
                Path(work, ".env").write_text(dotenv)
            yield
        finally:
            os.chdir(here)
            os.environ.clear()
            os.environ.update(saved)


def _outcomes(values: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """(ours, the oracle's): each the settings as plain values and the names given, or the error's type."""
    results = []
    for model in (Settings, Oracle):
        try:
            built = model(**(values or {}))
        except (SettingsError, ValidationError) as exc:
            results.append(("refused", exc))
            continue
        given = built.fields_set if isinstance(built, Settings) else built.model_fields_set
        results.append(({name: _plain(getattr(built, name)) for name in SPECS}, frozenset(given)))
    return results[0], results[1]


def _agree(ours: Any, oracle: Any) -> None:
    if ours[0] == "refused" or oracle[0] == "refused":
        shown = [f"refused ({str(r[1]).splitlines()[-2:]})" if r[0] == "refused" else "accepted"
                 for r in (ours, oracle)]
        assert ours[0] == oracle[0] == "refused", f"ours {shown[0]}, pydantic-settings {shown[1]}"
        return
    differ = {name: (ours[0][name], oracle[0][name]) for name in SPECS if ours[0][name] != oracle[0][name]}
    assert not differ, f"(ours, pydantic-settings): {differ}"
    assert ours[1] == oracle[1]


# texts a setting may be given: what each type reads, its edges, and noise
TEXTS = st.one_of(
    st.sampled_from(["", " ", "0", "1", "-1", "+5", " 7 ", "5.0", "5.5", "1_000", "1__0", "_1", "0x10", "1e3", "inf",
                     "-inf", "nan", "NaN", ".5", "5.", "true", "False", "YES", "off", "on", " yes", "t", "2", "٣",
                     "a,b", " a , ,b ", ",", "*:*", "auto", "off", "required", "x" * 32, "x" * 31,
                     "http://ui:8233", "https://", "ftp://x", "host:9464", ":1", "host:123456", "/tmp/x",
                     "postgresql+psycopg://u@h/d", "a\x00b", "65535", "65536", "86400", "86401", "4", "5", "64"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    st.from_regex(r"[ +-]?[0-9_]{1,6}(\.[0-9_]{0,3})?([eE][+-]?[0-9]{1,3})?[ ]?", fullmatch=True),
)
NAMES = st.sampled_from(sorted(SPECS))


def _env_name(name: str, case: int) -> str:
    variable = ENV_PREFIX + name.upper()
    return (variable, variable.lower(), variable.title())[case]


@settings(max_examples=examples(ci=300, deep=3000), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(NAMES, TEXTS.filter(lambda t: "\x00" not in t), st.integers(0, 2))
@example("api_port", "5.0", 0)
@example("flag_override_ttl_seconds", "nan", 1)
@example("temporal_tls", " yes", 2)
def test_each_setting_reads_a_variable_as_pydantic_settings_did(name: str, text: str, case: int) -> None:
    with _environment({_env_name(name, case): text}, None):
        _agree(*_outcomes())


def _dotenv_line(name: str, text: str) -> str:
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'{ENV_PREFIX}{name.upper()}="{quoted}"'


@settings(max_examples=examples(ci=150, deep=1500), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(NAMES, TEXTS.filter(lambda t: not {"\x00", "\n", "\r"} & set(t)),
       st.one_of(st.none(), st.tuples(NAMES, TEXTS.filter(lambda t: "\x00" not in t))))
def test_dotenv_values_read_as_pydantic_settings_read_them_and_the_environment_wins(
        name: str, text: str, in_env: tuple[str, str] | None) -> None:
    dotenv = "\n".join(["# a comment", "UNRELATED=1", _dotenv_line(name, text)]) + "\n"
    env = {ENV_PREFIX + in_env[0].upper(): in_env[1]} if in_env else {}
    with _environment(env, dotenv):
        _agree(*_outcomes())


ARGUMENTS = st.one_of(TEXTS, st.integers(-3, 70_000), st.floats(allow_nan=False, width=32), st.booleans(),
                      st.none(), st.lists(st.sampled_from(["a", "b/c", "*:*"]), max_size=3))


@settings(max_examples=examples(ci=200, deep=2000), deadline=None)
@given(NAMES, ARGUMENTS.filter(lambda v: not (isinstance(v, str) and "\x00" in v)))
def test_an_argument_is_converted_and_checked_as_pydantic_settings_did(name: str, value: Any) -> None:
    with _environment({}, None):
        _agree(*_outcomes({name: value}))


@settings(max_examples=examples(ci=50, deep=500), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(NAMES, st.sampled_from(["1", "5", "30", "true", "a,b", "auto", ""]), max_size=8))
def test_several_variables_at_once(values: dict[str, str]) -> None:
    with _environment({ENV_PREFIX + name.upper(): text for name, text in values.items()}, None):
        _agree(*_outcomes())


def test_a_refusal_names_the_variable_and_never_shows_a_secret() -> None:
    with _environment({"JOBFORGE_API_PORT": "eighty"}, None), pytest.raises(SettingsError) as refused:
        Settings()
    assert str(refused.value) == "JOBFORGE_API_PORT: must be an integer, got 'eighty'"
    with _environment({}, "JOBFORGE_EVENT_ROUTER_SHARDS=65\n"), pytest.raises(SettingsError) as refused:
        Settings()
    assert str(refused.value) == ".env's JOBFORGE_EVENT_ROUTER_SHARDS: must be <= 64, got '65'"
    with _environment({"JOBFORGE_CONSOLE_OPERATOR_TOKEN": "hunter2-short"}, None), \
            pytest.raises(SettingsError) as refused:
        Settings()
    assert "hunter2" not in str(refused.value) and "32 characters" in str(refused.value)
    with pytest.raises(TypeError, match="databse_url"):
        Settings(databse_url="postgresql://x")


def test_secrets_are_masked_and_replace_checks_what_it_changes() -> None:
    with _environment({"JOBFORGE_DATABASE_URL": "postgresql+psycopg://u:pw@h/d"}, None):
        settings_ = Settings()
    assert "pw" not in repr(settings_) and settings_.database_url_value() == "postgresql+psycopg://u:pw@h/d"
    assert settings_.fields_set == {"database_url"}
    changed = settings_.replace(api_port="9000", template_modules="a, b")
    assert (changed.api_port, changed.template_modules) == (9000, ["a", "b"])
    assert changed.fields_set == {"database_url", "api_port", "template_modules"}
    assert settings_.api_port == 8080  # the original is unchanged (settings are frozen)
    with pytest.raises(SettingsError, match="api_port: must be <= 65535"):
        settings_.replace(api_port=70_000)
