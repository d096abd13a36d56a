-- The WADO-RS metadata cache, PostgreSQL flavour. Keep in step with
-- ../sqlite/0007_series_metadata.sql; see pacs-store/src/metadata/mod.rs.
--
-- One row per instance: its DICOM JSON (PS3.18 F.2), answered as is, and where its pixel
-- data and other bulk values are in the object (JSON). Built the first time the instance's
-- metadata, frames or bulk data is asked for; a series' (study's) metadata is the bodies of
-- its instances in order, so it is served without opening an object. An instance never
-- changes once stored, so a row is never stale; rows of an older `format` are rebuilt.
-- Times are Unix microseconds (UTC).

CREATE TABLE instance_metadata (
    instance_ref  BIGINT PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
    format        BIGINT NOT NULL,
    body          TEXT NOT NULL,
    layout        TEXT NOT NULL,
    built_at      BIGINT NOT NULL
);
