-- Transport security per AE title, SQLite flavour. Keep in step with
-- ../postgres/0004_ae_security.sql; see pacs-store/src/index/clinics.rs (AeOptions).
--
-- tls_only: associations from this AE title are accepted only over the DICOM TLS port;
--   on the plain port they are refused.
-- require_client_cert: the peer must also have presented a client certificate that the
--   TLS listener verified against dicom_tls_client_ca. Implies tls_only (the store keeps
--   both set together).
-- Booleans as 0/1 (SQLite has no boolean type); existing AE titles keep plain TCP.

ALTER TABLE ae_titles ADD COLUMN tls_only INTEGER NOT NULL DEFAULT 0
    CHECK (tls_only IN (0, 1));
ALTER TABLE ae_titles ADD COLUMN require_client_cert INTEGER NOT NULL DEFAULT 0
    CHECK (require_client_cert IN (0, 1));
