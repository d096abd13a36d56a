-- Patient-name search keys (pacs-store/src/index/name_keys.rs): every name lower-cased in
-- Rust (full Unicode, which SQLite's LOWER is not), once per patient name, so that
-- PatientName matching (exact, `prefix*` wildcards, fuzzy) is an index range instead of a
-- LOWER(...) LIKE scan of every patient. Kinds: 0 the whole value, 1/2/3 its alphabetic,
-- ideographic and phonetic groups, 4 every suffix that starts a component or word (fuzzy
-- matching). `patients.name_keys_source` records which names the keys were made from;
-- NULL means "not made yet" (rows from before this migration; `pacs` fills them at start).
-- Keep in step with the other flavour.

CREATE TABLE patient_name_keys (
    patient_ref  INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    kind         INTEGER NOT NULL,
    name_key     TEXT NOT NULL,
    PRIMARY KEY (name_key, kind, patient_ref)
) WITHOUT ROWID;
CREATE INDEX patient_name_keys_patient ON patient_name_keys (patient_ref);

ALTER TABLE patients ADD COLUMN name_keys_source TEXT;
