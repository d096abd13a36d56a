-- Delivery of signed reports to the clinic (pacs-store/src/reports/delivery.rs),
-- PostgreSQL flavour. Keep in step with ../sqlite/0014_report_delivery.sql. Times are Unix
-- microseconds (UTC).
--
-- receives_reports: this AE title of a clinic (with a host and a port) is where the
--   clinic's signed reports are pushed by C-STORE.
-- report_deliveries: one row per version of a report (0: as signed; n: after its n-th
--   addendum), written in the signing transaction — the durable outbox of delivery. The
--   DICOM documents (Basic Text SR and encapsulated PDF) get their UIDs here, so that
--   making them again after a crash gives the same instances; documents_stored_at says
--   they are in the archive. state: pending (to send, at next_attempt_at), delivered,
--   failed (gave up after the configured attempts; an administrator can retry), or
--   no_destination (the clinic has no AE that receives reports). lease_until: a node is
--   sending it; another node leaves it alone until then.

ALTER TABLE ae_titles ADD COLUMN receives_reports BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE report_deliveries (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    report_id             BIGINT NOT NULL REFERENCES reports(id),
    version               BIGINT NOT NULL,
    sr_series_uid         TEXT NOT NULL,
    sr_instance_uid       TEXT NOT NULL UNIQUE,
    pdf_series_uid        TEXT NOT NULL,
    pdf_instance_uid      TEXT NOT NULL UNIQUE,
    documents_stored_at   BIGINT,
    state                 TEXT NOT NULL
        CHECK (state IN ('pending', 'delivered', 'failed', 'no_destination')),
    destination_ae        TEXT,
    attempts              BIGINT NOT NULL DEFAULT 0,
    next_attempt_at       BIGINT NOT NULL,
    lease_until           BIGINT,
    last_error            TEXT,
    delivered_at          BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (report_id, version)
);

CREATE INDEX report_deliveries_due ON report_deliveries (state, next_attempt_at);
