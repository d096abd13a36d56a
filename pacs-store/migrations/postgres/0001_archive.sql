-- Archive index, PostgreSQL flavour. Keep in step with ../sqlite/0001_archive.sql.
-- Times are Unix microseconds (UTC). Text is UTF-8 decoded from the data set's character set.

CREATE TABLE clinics (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE ae_titles (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ae_title    TEXT NOT NULL UNIQUE,
    clinic_id   BIGINT NOT NULL REFERENCES clinics(id),
    host        TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE patients (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issuer                TEXT NOT NULL,
    patient_id            TEXT NOT NULL,
    issuer_of_patient_id  TEXT,
    patient_name          TEXT,
    name_alphabetic       TEXT,
    name_ideographic      TEXT,
    name_phonetic         TEXT,
    birth_date            TEXT,
    sex                   TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (issuer, patient_id)
);

CREATE TABLE studies (
    id                        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    study_instance_uid        TEXT NOT NULL UNIQUE,
    patient_ref               BIGINT NOT NULL REFERENCES patients(id),
    clinic_id                 BIGINT REFERENCES clinics(id),
    source_ae                 TEXT,
    study_date                TEXT,
    study_time                TEXT,
    accession_number          TEXT,
    study_id                  TEXT,
    study_description         TEXT,
    referring_physician_name  TEXT,
    institution_name          TEXT,
    requested_priority        TEXT,
    modalities_in_study       TEXT NOT NULL DEFAULT '',
    body_parts                TEXT NOT NULL DEFAULT '',
    number_of_series          BIGINT NOT NULL DEFAULT 0,
    number_of_instances       BIGINT NOT NULL DEFAULT 0,
    size_bytes                BIGINT NOT NULL DEFAULT 0,
    first_received_at         BIGINT NOT NULL,
    last_received_at          BIGINT NOT NULL,
    state                     TEXT NOT NULL DEFAULT 'receiving',
    ready_at                  BIGINT,
    ready_count               BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX studies_patient ON studies (patient_ref);
CREATE INDEX studies_date ON studies (study_date);
CREATE INDEX studies_accession ON studies (accession_number);
CREATE INDEX studies_state ON studies (state, last_received_at);

CREATE TABLE series (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    series_instance_uid  TEXT NOT NULL UNIQUE,
    study_ref            BIGINT NOT NULL REFERENCES studies(id),
    modality             TEXT,
    series_number        BIGINT,
    series_description   TEXT,
    body_part_examined   TEXT,
    series_date          TEXT,
    series_time          TEXT,
    station_name         TEXT,
    number_of_instances  BIGINT NOT NULL DEFAULT 0,
    size_bytes           BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL
);
CREATE INDEX series_study ON series (study_ref);

CREATE TABLE instances (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sop_instance_uid        TEXT NOT NULL UNIQUE,
    series_ref              BIGINT NOT NULL REFERENCES series(id),
    study_ref               BIGINT NOT NULL REFERENCES studies(id),
    sop_class_uid           TEXT NOT NULL,
    instance_number         BIGINT,
    transfer_syntax_uid     TEXT NOT NULL,
    object_key              TEXT NOT NULL UNIQUE,
    size_bytes              BIGINT NOT NULL,
    dataset_offset          BIGINT NOT NULL,
    content_hash            TEXT NOT NULL,
    rows                    BIGINT,
    columns                 BIGINT,
    number_of_frames        BIGINT,
    specific_character_set  TEXT,
    clinic_id               BIGINT REFERENCES clinics(id),
    source_ae               TEXT,
    received_at             BIGINT NOT NULL
);
CREATE INDEX instances_series ON instances (series_ref);
CREATE INDEX instances_study ON instances (study_ref);

-- A second copy of a known SOP Instance UID with different content: kept, never
-- overwriting the first, for an administrator to review.
CREATE TABLE instance_conflicts (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sop_instance_uid     TEXT NOT NULL,
    object_key           TEXT NOT NULL UNIQUE,
    content_hash         TEXT NOT NULL,
    size_bytes           BIGINT NOT NULL,
    dataset_offset       BIGINT NOT NULL,
    transfer_syntax_uid  TEXT NOT NULL,
    clinic_id            BIGINT REFERENCES clinics(id),
    source_ae            TEXT,
    received_at          BIGINT NOT NULL
);
CREATE INDEX instance_conflicts_uid ON instance_conflicts (sop_instance_uid);

-- Outbox of domain events ("instance_stored", "study_ready", "study_updated"), written in
-- the same transaction as the change they announce; consumers keep their own cursor (id).
CREATE TABLE events (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                TEXT NOT NULL,
    study_instance_uid  TEXT NOT NULL,
    sop_instance_uid    TEXT,
    payload             TEXT NOT NULL DEFAULT '{}',
    created_at          BIGINT NOT NULL
);
CREATE INDEX events_study ON events (study_instance_uid);
