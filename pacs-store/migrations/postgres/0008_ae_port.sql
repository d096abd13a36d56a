-- Where a registered AE title listens, for C-MOVE (see pacs-store/src/index/clinics.rs,
-- AeOptions::port). An AE title with a host and a port can be a move destination for its
-- own clinic. NULL: it only sends. Keep in step with the other flavour.

ALTER TABLE ae_titles ADD COLUMN port INTEGER CHECK (port IS NULL OR (port BETWEEN 1 AND 65535));
