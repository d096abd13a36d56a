-- Which radiologist a study was given to read, PostgreSQL flavour. Keep in step with
-- ../sqlite/0005_access.sql. Times are Unix microseconds (UTC).
-- The access policy (pacs-store/src/access.rs) lets a central radiologist see the studies
-- assigned to them and every other study of those patients (priors). An assignment is
-- history: reassigning a study revokes the old row (revoked_at) and adds a new one, so
-- a radiologist who read a study keeps it unless an administrator revokes it.
-- The worklist (reading tasks) writes here; until then an administrator assigns by hand.

CREATE TABLE study_assignments (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    study_ref    BIGINT NOT NULL REFERENCES studies(id),
    user_id      BIGINT NOT NULL REFERENCES users(id),
    assigned_at  BIGINT NOT NULL,
    -- the user who assigned it (NULL: the system's routing)
    assigned_by  BIGINT REFERENCES users(id),
    revoked_at   BIGINT
);
CREATE INDEX study_assignments_user ON study_assignments (user_id, revoked_at);
CREATE INDEX study_assignments_study ON study_assignments (study_ref);
