"""Tern configuration: environment variables with prefix ``TERN_``, an optional TOML file, defaults.

The settings are grouped in sections (:mod:`tern.config_sections`): ``settings.temporal.address``,
``settings.database.pg_port``, ``settings.sandbox.timeout_s``. Each field is set by

- its environment name ``TERN_<SECTION>__<FIELD>``: ``TERN_DATABASE__PG_PORT`` (pydantic-settings'
  ``env_nested_delimiter``); a root field by ``TERN_<FIELD>`` (``TERN_DATA_DIR``);
- or a key in a ``[section]`` table of the TOML file named by ``TERN_CONFIG`` (default ``./tern.toml`` when it
  exists).

Precedence (highest first): keyword arguments, environment, TOML file, the defaults. Lists and dicts are given
in the environment as JSON (``TERN_APPROVAL__APPROVERS='["alice", "bob"]'``). Unknown keys are refused.

The flat names of Tern 0.1 (``TERN_PG_PORT``, ``TERN_SANDBOX_TIMEOUT_S``; top-level ``pg_port = 1`` in the file)
are no longer read: one that is set fails with :class:`RetiredSettingName` naming its new name
(:func:`retired_names` maps each to its section and field).
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin
from urllib.parse import quote

from pydantic import Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tern.config_sections import (
    ApprovalSettings,
    ArchiverSettings,
    ArielSettings,
    ChannelsSettings,
    ChatSettings,
    ControlSettings,
    DatabaseSettings,
    LLMSettings,
    LogbookSettings,
    MCPSettings,
    MemorySettings,
    OidcSettings,
    SandboxSettings,
    SimSettings,
    StackSettings,
    TemporalSettings,
    TriggersSettings,
    WorkerSettings,
    _Section,
)
from tern.models.search_attributes import NO_APPROVAL, PENDING_APPROVAL, RUN_USER

ENV_PREFIX = "TERN_"
NESTED_DELIMITER = "__"


def sections() -> dict[str, type[_Section]]:
    """Section name -> its model class, in the order of :class:`TernSettings`."""
    out: dict[str, type[_Section]] = {}
    for name, info in TernSettings.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, _Section):
            out[name] = info.annotation
    return out


@lru_cache(maxsize=1)
def retired_names() -> dict[str, tuple[str, str]]:
    """Every retired flat (Tern 0.1) setting name, lower case without the prefix, -> ``(section, field)``:
    ``{"pg_port": ("database", "pg_port"), "sandbox_timeout_s": ("sandbox", "timeout_s"), ...}``. Fields of the
    root (``data_dir``) are not listed: their name did not change."""
    out: dict[str, tuple[str, str]] = {}
    for section, model in sections().items():
        for field in model.model_fields:
            flat = model.flat_name(field)
            if flat in out:
                raise RuntimeError(f"flat setting name {flat!r} used twice")
            out[flat] = (section, field)
    return out


def env_names(loc: tuple[int | str, ...] | list[int | str]) -> list[str]:
    """The environment name of the setting at ``loc`` (a pydantic error location such as
    ``("sandbox", "timeout_s")``): ``["TERN_SANDBOX__TIMEOUT_S"]``; a root field gives its one name, a whole section
    its nested prefix (``["TERN_SANDBOX__*"]``), an unknown location none."""
    parts = [str(p) for p in loc]
    if not parts:
        return []
    model = sections().get(parts[0])
    if model is None:
        return [ENV_PREFIX + parts[0].upper()] if parts[0] in TernSettings.model_fields else []
    if len(parts) == 1 or parts[1] not in model.model_fields:
        return [f"{ENV_PREFIX}{parts[0].upper()}{NESTED_DELIMITER}*"]
    return [f"{ENV_PREFIX}{parts[0].upper()}{NESTED_DELIMITER}{parts[1].upper()}"]


def setting_error(exc: ValidationError) -> str:
    """The first error of a settings ``ValidationError`` as one line naming the setting's path and environment
    name: ``sandbox.timeout_s (TERN_SANDBOX__TIMEOUT_S): Input should be a valid number, unable to parse string
    as a number``."""
    first = exc.errors()[0]
    path = ".".join(str(p) for p in first["loc"]) or "(settings)"
    names = env_names(first["loc"])
    where = f"{path} ({' or '.join(names)})" if names else path
    return f"{where}: {first['msg']}"


class RetiredSettingName(ValueError):
    """A setting was given by its Tern 0.1 flat name (environment ``TERN_PG_PORT``, or top-level key ``pg_port`` in
    the TOML file), which is no longer read; the message names the name to use instead."""


def _retired_env(environ: Mapping[str, str]) -> list[str]:
    """One sentence per flat environment name set in ``environ`` (case-insensitive, as the environment source
    reads names), naming its nested replacement."""
    names = retired_names()
    out = []
    for key in environ:
        upper = key.upper()
        flat = upper[len(ENV_PREFIX) :].lower() if upper.startswith(ENV_PREFIX) else None
        if flat in names:
            section, field = names[flat]
            out.append(f"{key} is no longer read: set {ENV_PREFIX}{section.upper()}{NESTED_DELIMITER}{field.upper()}")
    return sorted(out)


def _takes_json(annotation: Any) -> bool:
    """Whether the environment gives a field of this type as JSON that must parse (a list or dict, not also a
    plain string): pydantic-settings' rule for nested environment values."""
    args = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    if str in args:
        return False
    return any(a in (list, dict) or get_origin(a) in (list, dict) for a in args)


def _bad_json_env(environ: Mapping[str, str]) -> list[str]:
    """One sentence per ``TERN_<SECTION>__<FIELD>`` in ``environ`` whose field takes JSON and whose value does not
    parse, naming the setting (pydantic-settings would only name the section)."""
    out = []
    for key, value in environ.items():
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        section, sep, field = upper[len(ENV_PREFIX) :].lower().partition(NESTED_DELIMITER)
        model = sections().get(section) if sep else None
        if model is None or field not in model.model_fields or not _takes_json(model.model_fields[field].annotation):
            continue
        try:
            json.loads(value)
        except ValueError as exc:
            out.append(
                f"{section}.{field} ({key}): not valid JSON ({exc}); give a list or table as JSON, e.g. '[\"a\"]'"
            )
    return sorted(out)


class EnvCheckSource(PydanticBaseSettingsSource):
    """Gives no values; checks the environment before it is read: refuses the flat names of Tern 0.1
    (:class:`RetiredSettingName`), so a deployment that still sets ``TERN_PG_PORT`` fails naming
    ``TERN_DATABASE__PG_PORT`` instead of running on the default, and a list or table setting whose value is not
    JSON (``ValueError`` naming the setting)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` returns the whole state at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        retired = _retired_env(os.environ)
        if retired:
            raise RetiredSettingName("; ".join(retired))
        bad = _bad_json_env(os.environ)
        if bad:
            raise ValueError("; ".join(bad))
        return {}


class SectionsTomlSettingsSource(PydanticBaseSettingsSource):
    """The TOML file (pydantic-settings' ``TomlConfigSettingsSource``); a top-level key that is a Tern 0.1 flat name
    (``pg_port = 1``) raises :class:`RetiredSettingName` naming its ``[section]`` and key."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self._path = path
        self._toml = TomlConfigSettingsSource(settings_cls, toml_file=path)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` returns the whole state at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data = dict(self._toml())
        names = retired_names()
        retired = [
            f"{key} (top level of {self._path}) is no longer read: put it in [{names[key][0]}] as {names[key][1]}"
            for key in sorted(data)
            if key in names and key not in self.settings_cls.model_fields
        ]
        if retired:
            raise RetiredSettingName("; ".join(retired))
        return data


def _toml_file() -> Path:
    return Path(os.environ.get("TERN_CONFIG", "tern.toml"))


class TernSettings(BaseSettings):
    """All runtime settings of Tern, in sections (``settings.temporal.address``, ``settings.sandbox.timeout_s``;
    see :mod:`tern.config_sections`). Units are given in each field's description.

    Keyword arguments take a section as a dict: ``TernSettings(database={"pg_port": 1})`` (merged with the
    other sources field by field). Raises ``pydantic.ValidationError`` naming the bad field by its path
    (``sandbox.timeout_s``; :func:`env_names` turns it into the environment name),
    ``pydantic_settings.SettingsError`` naming the field whose environment value is not valid JSON, or
    :class:`RetiredSettingName` for a Tern 0.1 flat name.
    """

    model_config = SettingsConfigDict(
        env_prefix="TERN_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(
        default_factory=lambda: Path.home() / ".tern",
        description="Directory holding all embedded state, default ~/.tern (Temporal SQLite file, PostgreSQL "
        "data, logs, PIDs).",
    )
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    sim: SimSettings = Field(default_factory=SimSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    ariel: ArielSettings = Field(default_factory=ArielSettings)
    logbook: LogbookSettings = Field(default_factory=LogbookSettings)
    channels: ChannelsSettings = Field(default_factory=ChannelsSettings)
    archiver: ArchiverSettings = Field(default_factory=ArchiverSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    triggers: TriggersSettings = Field(default_factory=TriggersSettings)
    mcp: MCPSettings = Field(default_factory=MCPSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment (``TERN_SANDBOX__TIMEOUT_S``), then the TOML file, then the
        defaults (pydantic-settings "Customise settings sources"; earlier sources win, field by field). A retired
        flat name in the environment or the file raises :class:`RetiredSettingName`."""
        toml = SectionsTomlSettingsSource(settings_cls, _toml_file())
        return (init_settings, EnvCheckSource(settings_cls), env_settings, toml, file_secret_settings)

    @model_validator(mode="after")
    def _process_backend_needs_all_code(self) -> TernSettings:
        """Refuse the process sandbox backend unless every piece of code waits for a human decision."""
        refusal = process_backend_refusal(self.sandbox.backend, self.approval.python_mode)
        if refusal:
            raise ValueError(refusal)
        return self

    # Derived values -------------------------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """The owner's PostgreSQL DSN, for migrations (``tern migrate``, ``tern up``) and the tools that load data
        (the embedded server as ``postgres`` unless ``database.url`` is set)."""
        return self.database.url or self._embedded_dsn("postgres")

    @property
    def writer_dsn(self) -> str:
        """The DSN of the worker and of the services that record decisions: ``database.writer_url``; unset, the
        embedded server as ``tern_writer`` (INSERT-only on the audit) when ``database.url`` is unset, else
        ``database.url``."""
        return self.database.writer_url or (self.database.url or self._embedded_dsn("tern_writer"))

    @property
    def reader_dsn(self) -> str:
        """The DSN of the read-only tools: ``database.reader_url``; unset, the embedded server as ``tern_reader``
        (SELECT only) when ``database.url`` is unset, else ``database.url``."""
        return self.database.reader_url or (self.database.url or self._embedded_dsn("tern_reader"))

    def _embedded_dsn(self, role: str) -> str:
        return f"postgresql://{role}@127.0.0.1:{self.database.pg_port}/tern"

    @property
    def ui_url(self) -> str:
        """Base URL of the Temporal Web UI: ``temporal.ui_url``, else ``http://<host of temporal.address>:<ui_port>``
        (``temporal.ui_port``)."""
        host = self.temporal.address.rpartition(":")[0] or "127.0.0.1"
        return self.temporal.ui_url or f"http://{host}:{self.temporal.ui_port}"

    def run_url(self, workflow_id: str) -> str:
        """Web UI link to one workflow run."""
        return f"{self.ui_url}/namespaces/{self.temporal.namespace}/workflows/{workflow_id}"

    def pending_query(self, *, kind: str | None = None, user: str | None = None) -> str:
        """The visibility query for runs waiting for a decision: ``ExecutionStatus = "Running" AND
        TernPendingApproval != "none"``, narrowed to one request ``kind`` (e.g. ``control_write``, ``python``) and/or
        to the runs of one requesting ``user`` (``TernUser``). Python steps wait in their own child workflow, which
        carries no ``TernUser``: narrow by user and they drop out. Raises ``ValueError`` for a value holding a quote
        or a backslash (it could not be quoted safely)."""
        for value in (kind, user):
            if value is not None and ('"' in value or "\\" in value):
                raise ValueError(f"cannot put {value!r} in a visibility query")
        clauses = ['ExecutionStatus = "Running"', f'{PENDING_APPROVAL} != "{NO_APPROVAL}"']
        if kind:
            clauses.append(f'{PENDING_APPROVAL} = "{kind}"')
        if user:
            clauses.append(f'{RUN_USER} = "{user}"')
        return " AND ".join(clauses)

    def pending_url(self, *, kind: str | None = None, user: str | None = None) -> str:
        """Web UI link to the list of runs waiting for a decision (:meth:`pending_query` in the workflow list's
        ``?query=`` URL parameter, which the UI reads as its filter: temporalio/ui ``searchParams.get('query')``)."""
        query = quote(self.pending_query(kind=kind, user=user), safe="")
        return f"{self.ui_url}/namespaces/{self.temporal.namespace}/workflows?query={query}"

    def ca_environment(self) -> dict[str, str]:
        """Environment variables that point a Channel Access client (pyepics/libca) at the configured IOCs."""
        return {
            "EPICS_CA_ADDR_LIST": self.control.ca_addr_list,
            "EPICS_CA_AUTO_ADDR_LIST": "YES" if self.control.ca_auto_addr_list else "NO",
            "EPICS_CA_SERVER_PORT": str(self.control.ca_server_port),
        }


def process_backend_refusal(backend: str, python_approval_mode: str) -> str | None:
    """Why sandbox ``backend`` may not run code under ``python_approval_mode`` (the worker's floor:
    ``TERN_APPROVAL__PYTHON_MODE``, or a policy file's ``python_approval_mode``), or None when it may.

    The ``process`` backend runs code on the host with no isolation, as the worker's user, with the worker's
    environment within reach (database URL, tokens, secrets files): code no person has read must never run
    there, so it requires ``all_code`` (every piece of code approved before it runs). ``control_writes`` and
    ``disabled`` let unreviewed code run and are refused with it. Any backend is fine under ``all_code``, and
    Docker under any mode."""
    if backend == "process" and python_approval_mode != "all_code":
        return (
            f"the process sandbox backend (TERN_SANDBOX__BACKEND=process) runs code on the host without isolation, "
            f"with the worker's secrets in reach, so it requires python approval mode all_code "
            f'(TERN_APPROVAL__PYTHON_MODE=all_code, or python_approval_mode = "all_code" in the approval policy '
            f"file); the mode in force is {python_approval_mode!r}, which lets code run that nobody approved"
        )
    return None


def current_user() -> str:
    """The operating-system user name, used as the default requester and approver."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


@lru_cache(maxsize=1)
def get_settings() -> TernSettings:
    """The process-wide settings (cached). Raises ``pydantic.ValidationError`` naming bad fields."""
    return TernSettings()
