-- Reports (pacs-store/src/reports/), PostgreSQL flavour. Keep in step with
-- ../sqlite/0012_reports.sql. Times are Unix microseconds (UTC).
--
-- A township doctor's preliminary impression (optional, one per study and author); the
-- central radiologist's report of a reading task: draft → final (signed) → amended (signed
-- addenda). A signed report or addendum is never updated: its signature covers a canonical
-- serialisation of what is stored here (reports::signing), so a changed byte fails
-- verification. Radiologists' Ed25519 private keys are stored sealed (AEAD) under the
-- archive's report key, which lives outside the database.

CREATE TABLE preliminary_impressions (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    study_ref    BIGINT NOT NULL REFERENCES studies(id),
    author_id    BIGINT NOT NULL REFERENCES users(id),
    text         TEXT NOT NULL,
    urgent       BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (study_ref, author_id)
);

CREATE TABLE signing_keys (
    user_id             BIGINT PRIMARY KEY REFERENCES users(id),
    key_id              TEXT NOT NULL UNIQUE,
    public_key          TEXT NOT NULL,
    sealed_private_key  TEXT NOT NULL,
    created_at          BIGINT NOT NULL
);

CREATE TABLE reports (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id            BIGINT NOT NULL UNIQUE REFERENCES reading_tasks(id),
    study_ref          BIGINT NOT NULL REFERENCES studies(id),
    author_id          BIGINT NOT NULL REFERENCES users(id),
    template           TEXT NOT NULL,
    clinical_information TEXT NOT NULL DEFAULT '',
    technique          TEXT NOT NULL DEFAULT '',
    findings           TEXT NOT NULL DEFAULT '',
    impression         TEXT NOT NULL DEFAULT '',
    -- the radiologist's verdict on the township preliminary impression, if there was one:
    -- agree | minor | major
    agreement          TEXT,
    agreement_comment  TEXT,
    critical           BIGINT NOT NULL DEFAULT 0,
    -- draft | final | amended
    state              TEXT NOT NULL,
    signed_at          BIGINT,
    signer_key_id      TEXT,
    signature          TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX reports_study ON reports (study_ref);

CREATE TABLE report_addenda (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    report_id      BIGINT NOT NULL REFERENCES reports(id),
    author_id      BIGINT NOT NULL REFERENCES users(id),
    text           TEXT NOT NULL,
    signed_at      BIGINT NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL
);
CREATE INDEX report_addenda_report ON report_addenda (report_id);
