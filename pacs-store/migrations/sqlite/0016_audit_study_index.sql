-- The audit search by study (`GET /api/admin/audit?study=UID`, the admin pages' audit
-- trail) reads newest first through this index instead of scanning the trail. Keep the two
-- flavours in step.

CREATE INDEX audit_log_study ON audit_log (study_instance_uid, id);
