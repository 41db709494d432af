-- The admin REST API (/api/v1), implemented in PostgreSQL.
--
-- The daemon forwards every /api/v1 request to
--     SELECT status, content_type, body FROM jd_api(method, path, query, body, token)
-- and writes back exactly that status, content type and body. `journeyctl` calls jd_admin(...)
-- (full privileges, actor 'journeyctl') and the convenience functions at the end of this file.
--
-- Layout of this file:
--   1. schema: admin_tokens, audit_log, tagging_rules, the interview guide, extra model columns
--   2. plumbing: errors, responses, input checking, audit, pagination, random keys
--   3. model writes shared by the API and "map as code" (validation lives here)
--   4. route handlers
--   5. routing table, jd_admin, jd_api
--   6. map as code: jd_map_document, jd_apply_map
--   7. interview findings import: jd_import_findings
--   8. CLI conveniences: jd_site_create, jd_token_create, jd_token_revoke
--
-- This migration runs after 001 and before 010 on a fresh database, so nothing here refers to
-- 010's columns (sites.identity_secret) outside function bodies; privacy routes are in 011.
--
-- Errors: internal functions raise SQLSTATE 'JDnnn' (nnn = HTTP status) with MESSAGE = a sentence,
-- DETAIL = a stable code and HINT = the offending field. The dispatcher turns those, and every
-- class 22/23/54 error a client can provoke, into {"error":{"code","message","field"}}; only a bug
-- gives 500.

-- ===========================================================================================
-- 1. Schema
-- ===========================================================================================

-- Bearer tokens. Only sha256(token) is stored. A token is "jd_" + 43 base64url characters
-- encoding 32 bytes from the server's strong random source, so looking it up by its hash in a
-- unique index is safe against timing attacks: what a lookup's timing could reveal is where a
-- guessed token's *hash* diverges from stored hashes, which says nothing usable about a stored
-- token (finding a preimage of a 256-bit random value is infeasible). No raw token is ever
-- stored, logged or written to audit_log.
CREATE TABLE admin_tokens (
    id           bigserial PRIMARY KEY,
    site_id      bigint REFERENCES sites (id) ON DELETE CASCADE,  -- NULL = every site
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    scope        text NOT NULL DEFAULT 'read' CHECK (scope IN ('read', 'admin')),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);

-- Every write through the API (and journeyctl) appends one row. detail never holds secrets.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,            -- create | update | delete | apply | import | ...
    object_type text NOT NULL,
    object_id   text,
    site_id     bigint,                   -- for site-restricted reads of the log; no FK (kept after deletes)
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id);
CREATE INDEX audit_log_site ON audit_log (site_id, id);

-- Targeting and tagging rules of a site: url / referrer / utm rules set stage and touchpoint;
-- persona_attribute and screener rules assign a persona. `match` holds the kind's parameters.
CREATE TABLE tagging_rules (
    id            bigserial PRIMARY KEY,
    site_id       bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    map_id        bigint REFERENCES maps (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('url', 'referrer', 'utm', 'persona_attribute', 'screener')),
    match         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(match) = 'object'),
    stage_id      bigint REFERENCES stages (id) ON DELETE CASCADE,
    touchpoint_id bigint REFERENCES touchpoints (id) ON DELETE CASCADE,
    persona_id    bigint REFERENCES personas (id) ON DELETE CASCADE,
    position      integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tagging_rules_site ON tagging_rules (site_id, position, id);

-- The built-in interview guide: six questions, each tied to the lane it feeds, with the question
-- kind it becomes when copied into a survey.
CREATE FUNCTION jd_interview_guide()
RETURNS TABLE ("position" int, key text, prompt text, lane text, kind text)
LANGUAGE sql IMMUTABLE AS $$
    VALUES (1, 'steps',       'What steps did you take?', 'actions', 'action'),
           (2, 'problem',     'What problem were you trying to solve, and what caused it?', 'thoughts', 'text'),
           (3, 'solved',      'Did the product solve it?', 'thoughts', 'text'),
           (4, 'confusion',   'Where were you confused or frustrated, or left with questions?', 'obstacles', 'text'),
           (5, 'roadblocks',  'What roadblocks stopped you?', 'obstacles', 'obstacle'),
           (6, 'feelings',    'How did you feel before, during and after?', 'emotions', 'text')
$$;

-- Model columns the API needs beyond 001.
ALTER TABLE obstacles ADD COLUMN position integer NOT NULL DEFAULT 0;
-- Interview evidence: the verbatim quote (thought holds the coded thought).
ALTER TABLE answers ADD COLUMN quote text CHECK (length(quote) <= 4000);
CREATE INDEX stage_resources_stage ON stage_resources (stage_id, position);
CREATE INDEX touchpoint_stages_stage ON touchpoint_stages (stage_id);
CREATE INDEX questions_stage ON questions (stage_id);
CREATE INDEX questions_touchpoint ON questions (touchpoint_id);
CREATE INDEX answers_question_id ON answers (question_id);
