-- Reports (pacs-store/src/reports/), SQLite flavour. Keep in step with
-- ../postgres/0012_reports.sql. Times are Unix microseconds (UTC).
--
-- A township doctor's preliminary impression (optional, one per study and author); the
-- central radiologist's report of a reading task: draft → final (signed) → amended (signed
-- addenda). A signed report or addendum is never updated: its signature covers a canonical
-- serialisation of what is stored here (reports::signing), so a changed byte fails
-- verification. Radiologists' Ed25519 private keys are stored sealed (AEAD) under the
-- archive's report key, which lives outside the database.

CREATE TABLE preliminary_impressions (
    id           INTEGER PRIMARY KEY,
    study_ref    INTEGER NOT NULL REFERENCES studies(id),
    author_id    INTEGER NOT NULL REFERENCES users(id),
    text         TEXT NOT NULL,
    urgent       INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (study_ref, author_id)
);

CREATE TABLE signing_keys (
    user_id             INTEGER PRIMARY KEY REFERENCES users(id),
    key_id              TEXT NOT NULL UNIQUE,
    public_key          TEXT NOT NULL,
    sealed_private_key  TEXT NOT NULL,
    created_at          INTEGER NOT NULL
);

CREATE TABLE reports (
    id                 INTEGER PRIMARY KEY,
    task_id            INTEGER NOT NULL UNIQUE REFERENCES reading_tasks(id),
    study_ref          INTEGER NOT NULL REFERENCES studies(id),
    author_id          INTEGER NOT NULL REFERENCES users(id),
    template           TEXT NOT NULL,
    clinical_information TEXT NOT NULL DEFAULT '',
    technique          TEXT NOT NULL DEFAULT '',
    findings           TEXT NOT NULL DEFAULT '',
    impression         TEXT NOT NULL DEFAULT '',
    -- the radiologist's verdict on the township preliminary impression, if there was one:
    -- agree | minor | major
    agreement          TEXT,
    agreement_comment  TEXT,
    critical           INTEGER NOT NULL DEFAULT 0,
    -- draft | final | amended
    state              TEXT NOT NULL,
    signed_at          INTEGER,
    signer_key_id      TEXT,
    signature          TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX reports_study ON reports (study_ref);

CREATE TABLE report_addenda (
    id             INTEGER PRIMARY KEY,
    report_id      INTEGER NOT NULL REFERENCES reports(id),
    author_id      INTEGER NOT NULL REFERENCES users(id),
    text           TEXT NOT NULL,
    signed_at      INTEGER NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL
);
CREATE INDEX report_addenda_report ON report_addenda (report_id);
