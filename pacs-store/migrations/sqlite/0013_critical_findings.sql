-- Critical findings (pacs-store/src/reports/critical.rs), SQLite flavour. Keep in step with
-- ../postgres/0013_critical_findings.sql. Times are Unix microseconds (UTC).
-- One row per signed report flagged critical: the ACR's communication documentation —
-- whom it was sent to (the originating clinic), when, how, who acknowledged and when, and
-- when it was escalated for want of an acknowledgement.

CREATE TABLE critical_notifications (
    id                INTEGER PRIMARY KEY,
    report_id         INTEGER NOT NULL UNIQUE REFERENCES reports(id),
    clinic_id         INTEGER REFERENCES clinics(id),
    notified_at       INTEGER NOT NULL,
    -- how the clinic was told (portal and live feed; later also the pushed report)
    channel           TEXT NOT NULL,
    ack_due_at        INTEGER NOT NULL,
    acknowledged_by   INTEGER REFERENCES users(id),
    acknowledged_at   INTEGER,
    escalated_at      INTEGER
);
CREATE INDEX critical_notifications_open ON critical_notifications (acknowledged_at, ack_due_at);
