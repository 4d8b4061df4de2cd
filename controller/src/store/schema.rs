//! Schema migrations, applied in order and tracked in `PRAGMA user_version`.
//!
//! SQL here sticks to what SQLite and PostgreSQL both accept (no AUTOINCREMENT, no
//! SQLite-only types), so a second store implementation can reuse it.

/// Each entry moves the schema from version `index` to `index + 1`.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE agents (
    id              TEXT PRIMARY KEY,
    hostname        TEXT NOT NULL,
    os              TEXT NOT NULL,
    kernel          TEXT NOT NULL DEFAULT '',
    agent_version   TEXT NOT NULL DEFAULT '',
    cert_sha256     TEXT NOT NULL,
    cert_not_after  BIGINT NOT NULL,
    enrolled_at     BIGINT NOT NULL,
    last_seen       BIGINT,
    revoked_at      BIGINT
);
CREATE INDEX agents_hostname ON agents (hostname);

CREATE TABLE technicians (
    name            TEXT PRIMARY KEY,
    tier            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    cert_sha256     TEXT,
    cert_not_after  BIGINT,
    revoked_at      BIGINT
);

CREATE TABLE tokens (
    secret_sha256   TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    technician      TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT,
    used_by         TEXT
);

CREATE TABLE tickets (
    number          BIGINT PRIMARY KEY,
    title           TEXT NOT NULL,
    status          TEXT NOT NULL,
    tier            TEXT NOT NULL,
    agent_id        TEXT,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE evidence (
    ticket          BIGINT NOT NULL REFERENCES tickets (number),
    sha256          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    size_bytes      BIGINT NOT NULL,
    agent_id        TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (ticket, sha256)
);

CREATE TABLE timeline (
    ticket          BIGINT NOT NULL REFERENCES tickets (number),
    seq             BIGINT NOT NULL,
    at              BIGINT NOT NULL,
    actor           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    detail          TEXT NOT NULL,
    evidence_sha256 TEXT,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL,
    PRIMARY KEY (ticket, seq)
);
"#,
    r#"
CREATE TABLE scripts (
    name            TEXT PRIMARY KEY,
    version         BIGINT NOT NULL,
    entry_json      TEXT NOT NULL,
    body            TEXT NOT NULL,
    signature       BLOB NOT NULL,
    added_at        BIGINT NOT NULL
);
"#,
    r#"
ALTER TABLE tickets ADD COLUMN requester TEXT NOT NULL DEFAULT '';
ALTER TABLE tickets ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE tickets ADD COLUMN owner TEXT;
ALTER TABLE tickets ADD COLUMN first_response_at BIGINT;
ALTER TABLE tickets ADD COLUMN resolved_at BIGINT;
ALTER TABLE tickets ADD COLUMN external_ref TEXT;
ALTER TABLE tickets ADD COLUMN sync_state TEXT;
ALTER TABLE evidence ADD COLUMN signature TEXT;
ALTER TABLE evidence ADD COLUMN redaction TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN cert_pem TEXT NOT NULL DEFAULT '';

CREATE TABLE outbox (
    id              BIGINT PRIMARY KEY,
    ticket          BIGINT NOT NULL REFERENCES tickets (number),
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    done_at         BIGINT
);
CREATE INDEX outbox_due ON outbox (done_at, next_attempt_at);
"#,
    r#"
CREATE TABLE deliveries (
    agent_id        TEXT NOT NULL,
    key             TEXT NOT NULL,
    ticket          BIGINT NOT NULL,
    evidence_sha256 TEXT,
    received_at     BIGINT NOT NULL,
    PRIMARY KEY (agent_id, key)
);
"#,
    r#"
ALTER TABLE agents ADD COLUMN prev_cert_sha256 TEXT;
ALTER TABLE technicians ADD COLUMN prev_cert_sha256 TEXT;
"#,
    r#"
CREATE TABLE console_logins (
    technician      TEXT PRIMARY KEY REFERENCES technicians (name),
    admin           BIGINT NOT NULL DEFAULT 0,
    password_hash   TEXT,
    totp_secret     TEXT,
    setup_sha256    TEXT,
    setup_expires_at BIGINT,
    failures        BIGINT NOT NULL DEFAULT 0,
    locked_until    BIGINT,
    last_totp_step  BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE TABLE console_sessions (
    token_sha256    TEXT PRIMARY KEY,
    technician      TEXT NOT NULL REFERENCES technicians (name),
    csrf            TEXT NOT NULL,
    address         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX console_sessions_technician ON console_sessions (technician);
CREATE TABLE console_prefs (
    technician      TEXT PRIMARY KEY REFERENCES technicians (name),
    agent_columns   TEXT NOT NULL
);
CREATE TABLE console_audit (
    id              BIGINT PRIMARY KEY,
    at              BIGINT NOT NULL,
    technician      TEXT NOT NULL,
    action          TEXT NOT NULL,
    detail          TEXT NOT NULL,
    address         TEXT NOT NULL
);
ALTER TABLE agents ADD COLUMN worst_finding TEXT;
ALTER TABLE agents ADD COLUMN snapshot_at BIGINT;
"#,
    // The console's fleet view reads every agent on each page: from this index alone
    // (about 150 bytes an agent) instead of the rows with their certificates (about
    // 1 KiB), and already in its order.
    r#"
CREATE INDEX agents_fleet ON agents (hostname, id, os, kernel, agent_version, enrolled_at,
    last_seen, revoked_at, worst_finding, snapshot_at);
"#,
    // Several nodes on one store: who is up (heartbeats), who does the once-only work
    // (leases), and the support codes users offer, whichever node their agent reaches.
    r#"
CREATE TABLE nodes (
    name            TEXT PRIMARY KEY,
    address         TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    heartbeat_at    BIGINT NOT NULL,
    agents_online   BIGINT NOT NULL DEFAULT 0,
    version         TEXT NOT NULL
);
CREATE TABLE leases (
    name            TEXT PRIMARY KEY,
    holder          TEXT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE TABLE support_codes (
    code_sha256     TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL UNIQUE,
    expires_at      BIGINT NOT NULL
);
"#,
    // Which node holds each agent's connection, so a node can route a request for an
    // agent connected elsewhere. `connected_at` is in Unix milliseconds.
    r#"
CREATE TABLE agent_location (
    agent_id        TEXT PRIMARY KEY,
    node            TEXT NOT NULL,
    connected_at    BIGINT NOT NULL
);
CREATE INDEX agent_location_node ON agent_location (node);
"#,
];
