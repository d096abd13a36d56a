-- Key images of a report (pacs-store/src/reports/mod.rs, KeyImage): a JSON array of
-- {"series_instance_uid", "sop_instance_uid", "frame", "caption"} of the report's study,
-- at most 8, written with the draft and covered by the signature when not empty. Shown in
-- the report's PDF. Keep the two flavours in step.

ALTER TABLE reports ADD COLUMN key_images TEXT NOT NULL DEFAULT '[]';
