-- The reading worklist (pacs-store/src/worklist.rs), PostgreSQL flavour. Keep in step with
-- ../sqlite/0011_worklist.sql. Times are Unix microseconds (UTC).
--
-- A reading task per "study ready" event of the outbox, created exactly once: the event's
-- id is unique here and the consumer's cursor moves in the same transaction. Routing rules
-- are ordered; the first whose conditions all hold (NULL = any) decides which radiologists
-- are eligible (a subspecialty, or anyone) and may set the priority. A claim is a lease
-- (claimed_by until lease_expires_at), taken with one conditional UPDATE, so of two
-- radiologists — on one node or two — exactly one wins.

CREATE TABLE routing_rules (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    position              BIGINT NOT NULL,
    name                  TEXT NOT NULL UNIQUE,
    -- conditions on the study (NULL: any)
    modality              TEXT,
    body_part             TEXT,
    description_contains  TEXT,
    clinic_id             BIGINT REFERENCES clinics(id),
    priority              TEXT,
    -- what the rule decides
    subspecialty          TEXT,
    set_priority          TEXT,
    enabled               BIGINT NOT NULL DEFAULT 1,
    created_at            BIGINT NOT NULL
);
CREATE INDEX routing_rules_position ON routing_rules (position, id);

-- When a radiologist reads (UTC minutes of the week, 0 = Monday 00:00); a radiologist
-- without any row is always on shift.
CREATE TABLE radiologist_shifts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    start_minute  BIGINT NOT NULL,
    end_minute    BIGINT NOT NULL
);
CREATE INDEX radiologist_shifts_user ON radiologist_shifts (user_id);

-- The modalities a radiologist is credentialed to read; none: all of them.
CREATE TABLE radiologist_credentials (
    user_id   BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    modality  TEXT NOT NULL,
    PRIMARY KEY (user_id, modality)
);

CREATE TABLE reading_tasks (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the outbox event that created it
    source_event_id   BIGINT NOT NULL UNIQUE,
    study_ref         BIGINT NOT NULL REFERENCES studies(id),
    clinic_id         BIGINT REFERENCES clinics(id),
    -- read | addendum-review
    kind              TEXT NOT NULL,
    -- stat | urgent | routine
    priority          TEXT NOT NULL,
    -- open | claimed | done | cancelled
    state             TEXT NOT NULL,
    rule_id           BIGINT REFERENCES routing_rules(id) ON DELETE SET NULL,
    -- whom routing chose (NULL: the pool)
    assigned_to       BIGINT REFERENCES users(id),
    claimed_by        BIGINT REFERENCES users(id),
    lease_expires_at  BIGINT,
    ready_at          BIGINT NOT NULL,
    due_at            BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    done_at           BIGINT,
    -- when the "deadline near" and "overdue" escalations were raised (once each)
    near_escalated_at     BIGINT,
    overdue_escalated_at  BIGINT
);
CREATE INDEX reading_tasks_assigned ON reading_tasks (assigned_to, state, due_at);
CREATE INDEX reading_tasks_state ON reading_tasks (state, due_at);
CREATE INDEX reading_tasks_study ON reading_tasks (study_ref);
CREATE INDEX reading_tasks_clinic ON reading_tasks (clinic_id, state, due_at);

-- How far each consumer of the outbox has read.
CREATE TABLE outbox_cursors (
    consumer       TEXT PRIMARY KEY,
    last_event_id  BIGINT NOT NULL
);

-- A sensible default set; administrators change it through the admin API. The last rule
-- takes anything to any radiologist, and a rule whose radiologists are all off shift or
-- busy elsewhere gives way to the next matching one.
INSERT INTO routing_rules (position, name, modality, body_part, subspecialty, created_at) VALUES
    (10, 'neuro-ct-head', 'CT', 'HEAD', 'neuro', 0),
    (20, 'neuro-mr-head', 'MR', 'HEAD', 'neuro', 0),
    (30, 'neuro-mr-brain', 'MR', 'BRAIN', 'neuro', 0),
    (40, 'chest-ct', 'CT', 'CHEST', 'chest', 0),
    (50, 'chest-dx', 'DX', 'CHEST', 'chest', 0),
    (60, 'chest-cr', 'CR', 'CHEST', 'chest', 0),
    (70, 'breast-mg', 'MG', NULL, 'breast', 0),
    (80, 'msk-mr-knee', 'MR', 'KNEE', 'msk', 0),
    (1000, 'anyone', NULL, NULL, NULL, 0);
