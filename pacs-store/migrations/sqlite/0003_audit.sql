-- Audit trail, SQLite flavour. Keep in step with ../postgres/0003_audit.sql; see
-- pacs-store/src/audit.rs for what each column means and how the chain is computed.
--
-- Append-only and hash-chained: entry n stores the hash of entry n-1 (prev_hash) and its own
-- hash over prev_hash and every other column. Ids are 1, 2, 3, … without gaps, assigned by
-- the appender (last id + 1) while it holds the append lock, so that a gap means a deleted
-- entry (an autoincrement would also skip numbers on its own).
-- Times are Unix microseconds (UTC).

CREATE TABLE audit_log (
    id                   INTEGER PRIMARY KEY,
    occurred_at          INTEGER NOT NULL,
    event_id             INTEGER NOT NULL,
    event_type           INTEGER,
    action               TEXT NOT NULL CHECK (action IN ('C', 'R', 'U', 'D', 'E')),
    outcome              INTEGER NOT NULL CHECK (outcome IN (0, 4, 8, 12)),
    outcome_description  TEXT,
    user_id              TEXT NOT NULL,
    user_role            TEXT NOT NULL,
    source_ip            TEXT,
    patient_id           TEXT,
    patient_issuer       TEXT,
    study_instance_uid   TEXT,
    instance_count       INTEGER NOT NULL,
    sop_instance_uids    TEXT,
    detail               TEXT,
    prev_hash            TEXT NOT NULL,
    hash                 TEXT NOT NULL
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, id);
CREATE INDEX audit_log_user ON audit_log (user_id, id);
CREATE INDEX audit_log_time ON audit_log (occurred_at);

-- A guard against mistakes, not against someone who can write the database file (they can
-- drop these triggers): that is what the hash chain is for.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
