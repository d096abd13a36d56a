-- Forwarding of the audit trail, SQLite flavour. Keep in step with
-- ../postgres/0006_audit_forwarding.sql; see pacs-store/src/audit_forwarding.rs.
--
-- One row per destination (the configured syslog address, host:port): the id of the last
-- audit_log entry handed to it. The forwarder reads the entries after last_id, sends them,
-- then moves last_id: a crash in between sends them again (at least once, in order).
-- Times are Unix microseconds (UTC).

CREATE TABLE audit_forwarding (
    destination  TEXT PRIMARY KEY,
    last_id      INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
