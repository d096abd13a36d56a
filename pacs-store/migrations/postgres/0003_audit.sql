-- Audit trail, PostgreSQL flavour. Keep in step with ../sqlite/0003_audit.sql; see
-- pacs-store/src/audit.rs for what each column means and how the chain is computed.
--
-- Append-only and hash-chained: entry n stores the hash of entry n-1 (prev_hash) and its own
-- hash over prev_hash and every other column. Ids are 1, 2, 3, … without gaps, assigned by
-- the appender (last id + 1) while it holds the append lock (pg_advisory_xact_lock), so
-- that a gap means a deleted entry. Deliberately not an IDENTITY column: a sequence hands
-- out numbers outside transactions and loses those of rolled-back ones, which would read as
-- deleted entries.
-- Times are Unix microseconds (UTC).

CREATE TABLE audit_log (
    id                   BIGINT PRIMARY KEY,
    occurred_at          BIGINT NOT NULL,
    event_id             BIGINT NOT NULL,
    event_type           BIGINT,
    action               TEXT NOT NULL CHECK (action IN ('C', 'R', 'U', 'D', 'E')),
    outcome              BIGINT NOT NULL CHECK (outcome IN (0, 4, 8, 12)),
    outcome_description  TEXT,
    user_id              TEXT NOT NULL,
    user_role            TEXT NOT NULL,
    source_ip            TEXT,
    patient_id           TEXT,
    patient_issuer       TEXT,
    study_instance_uid   TEXT,
    instance_count       BIGINT NOT NULL,
    sop_instance_uids    TEXT,
    detail               TEXT,
    prev_hash            TEXT NOT NULL,
    hash                 TEXT NOT NULL
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, id);
CREATE INDEX audit_log_user ON audit_log (user_id, id);
CREATE INDEX audit_log_time ON audit_log (occurred_at);

-- A guard against mistakes, not against the table's owner (who can drop these triggers):
-- that is what the hash chain is for. Give other roles INSERT and SELECT only.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
