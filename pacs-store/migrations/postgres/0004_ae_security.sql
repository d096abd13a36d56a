-- Transport security per AE title, PostgreSQL flavour. Keep in step with
-- ../sqlite/0004_ae_security.sql; see pacs-store/src/index/clinics.rs (AeOptions).
--
-- tls_only: associations from this AE title are accepted only over the DICOM TLS port;
--   on the plain port they are refused.
-- require_client_cert: the peer must also have presented a client certificate that the
--   TLS listener verified against dicom_tls_client_ca. Implies tls_only (the store keeps
--   both set together).
-- Existing AE titles keep plain TCP.

ALTER TABLE ae_titles ADD COLUMN tls_only BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE ae_titles ADD COLUMN require_client_cert BOOLEAN NOT NULL DEFAULT FALSE;
