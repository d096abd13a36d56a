-- Users, credentials and login throttling, SQLite flavour. Keep in step with
-- ../postgres/0002_users.sql. Times are Unix microseconds (UTC).
-- No secret is stored in clear: passwords as Argon2id PHC strings, API tokens and
-- session secrets as BLAKE3 hashes (hex) of their random bytes.

CREATE TABLE users (
    id                   INTEGER PRIMARY KEY,
    username             TEXT NOT NULL UNIQUE,
    -- admin | radiologist | township-doctor | clinician | service (checked in pacs-store)
    role                 TEXT NOT NULL,
    clinic_id            INTEGER REFERENCES clinics(id),
    -- NULL: no password login (a service account that uses API tokens only).
    password_hash        TEXT,
    disabled_at          INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    password_changed_at  INTEGER
);
CREATE INDEX users_clinic ON users (clinic_id);

CREATE TABLE user_subspecialties (
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    subspecialty  TEXT NOT NULL,
    PRIMARY KEY (user_id, subspecialty)
);

CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    label         TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_hash     TEXT NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL,
    -- absolute expiry
    expires_at      INTEGER NOT NULL,
    -- idle expiry: last_seen_at + idle_timeout
    idle_timeout    INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    revoked_at      INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Failed-login counters, one row per (scope, subject): scope 'user' keyed by the normalised
-- username (also for names that do not exist, so that the answer does not tell), scope
-- 'address' keyed by the client address (IPv6 by /64). Kept in the database so that the
-- limits hold across nodes and restarts.
CREATE TABLE login_throttle (
    scope            TEXT NOT NULL,
    subject          TEXT NOT NULL,
    failures         INTEGER NOT NULL,
    last_failure_at  INTEGER NOT NULL,
    locked_until     INTEGER NOT NULL,
    PRIMARY KEY (scope, subject)
);
CREATE INDEX login_throttle_age ON login_throttle (last_failure_at);
