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

-- ===========================================================================================
-- 2. Plumbing
-- ===========================================================================================

-- Who is calling: the actor written to audit_log, the token's scope and site (NULL = all sites).
CREATE TYPE jd_api_ctx AS (actor text, scope text, site_id bigint, token_id bigint);
-- What a route handler returns; jd_api/jd_admin serialise body (NULL = no body).
CREATE TYPE jd_api_resp AS (status int, body jsonb);

-- Raises an API error: SQLSTATE JD<status>, MESSAGE, DETAIL = stable code, HINT = field.
CREATE FUNCTION jd__fail(p_status int, p_code text, p_message text, p_field text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'JD' || p_status::text, MESSAGE = p_message,
                          DETAIL = p_code, HINT = coalesce(p_field, '');
END $$;

CREATE FUNCTION jd__error(p_status int, p_code text, p_message text, p_field text DEFAULT NULL)
RETURNS jd_api_resp LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(p_status, jsonb_build_object('error', jsonb_build_object(
        'code', p_code, 'message', p_message, 'field', nullif(p_field, ''))))::jd_api_resp
$$;

CREATE FUNCTION jd__ok(p_body jsonb, p_status int DEFAULT 200)
RETURNS jd_api_resp LANGUAGE sql IMMUTABLE AS $$ SELECT ROW(p_status, p_body)::jd_api_resp $$;

-- Request body as a JSON object (400 when missing, not JSON or not an object).
CREATE FUNCTION jd__body_object(p_body text, p_required boolean DEFAULT true)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    j jsonb;
BEGIN
    IF p_body IS NULL OR btrim(p_body) = '' THEN
        IF p_required THEN
            PERFORM jd__fail(400, 'missing_body', 'a JSON object body is required');
        END IF;
        RETURN '{}';
    END IF;
    BEGIN
        j := p_body::jsonb;
    EXCEPTION WHEN OTHERS THEN
        PERFORM jd__fail(400, 'bad_json', 'the body is not valid JSON: ' || SQLERRM);
    END;
    IF jsonb_typeof(j) <> 'object' THEN
        PERFORM jd__fail(400, 'bad_body', 'the body must be a JSON object');
    END IF;
    RETURN j;
END $$;

CREATE FUNCTION jd__body_json(p_body text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_body IS NULL OR btrim(p_body) = '' THEN
        PERFORM jd__fail(400, 'missing_body', 'a JSON body is required');
    END IF;
    RETURN p_body::jsonb;
EXCEPTION WHEN invalid_text_representation THEN
    PERFORM jd__fail(400, 'bad_json', 'the body is not valid JSON: ' || SQLERRM);
    RETURN NULL;
END $$;

-- Fields that clients may send back from a GET but cannot change: silently ignored.
CREATE FUNCTION jd__readonly_fields() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['id', 'created_at', 'updated_at', 'retired_at', 'version', 'map_id', 'survey_id',
                 'stage_id_of', 'identity_secret_set', 'last_used_at', 'active', 'previous_id']
$$;

-- Checks a body against a field spec {"field": "type"} and returns it without read-only fields.
-- Types: text, int, bool, object, array, textarray, number, ref (int or text), any; a trailing
-- '?' allows null. Unknown fields and wrong types are 400 with the field named.
CREATE FUNCTION jd__check(p_body jsonb, p_spec jsonb, p_prefix text DEFAULT '')
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k text;
    v jsonb;
    t text;
    nullable boolean;
    vt text;
    ok boolean;
    out jsonb := '{}';
BEGIN
    FOR k, v IN SELECT * FROM jsonb_each(p_body) LOOP
        t := p_spec ->> k;
        IF t IS NULL THEN
            IF k = ANY (jd__readonly_fields()) THEN
                CONTINUE;
            END IF;
            PERFORM jd__fail(400, 'unknown_field', format('unknown field "%s"', k), p_prefix || k);
        END IF;
        nullable := right(t, 1) = '?';
        t := rtrim(t, '?');
        vt := jsonb_typeof(v);
        IF vt = 'null' THEN
            ok := nullable OR t = 'any';
        ELSE
            ok := CASE t
                WHEN 'text' THEN vt = 'string'
                WHEN 'int' THEN vt = 'number' AND (v::text)::numeric = trunc((v::text)::numeric)
                                AND (v::text)::numeric BETWEEN -2147483648 AND 2147483647
                WHEN 'number' THEN vt = 'number'
                WHEN 'bool' THEN vt = 'boolean'
                WHEN 'object' THEN vt = 'object'
                WHEN 'array' THEN vt = 'array'
                WHEN 'textarray' THEN vt = 'array' AND NOT EXISTS (
                        SELECT 1 FROM jsonb_array_elements(v) e WHERE jsonb_typeof(e) <> 'string')
                WHEN 'ref' THEN vt = 'string'
                             OR (vt = 'number' AND (v::text)::numeric = trunc((v::text)::numeric)
                                 AND (v::text)::numeric BETWEEN 1 AND 9223372036854775807)
                ELSE true END;
        END IF;
        IF NOT ok THEN
            PERFORM jd__fail(400, 'invalid_type',
                format('field "%s" must be %s%s', k,
                       CASE t WHEN 'text' THEN 'a string' WHEN 'int' THEN 'an integer'
                              WHEN 'number' THEN 'a number' WHEN 'bool' THEN 'a boolean'
                              WHEN 'object' THEN 'an object' WHEN 'array' THEN 'an array'
                              WHEN 'textarray' THEN 'an array of strings'
                              WHEN 'ref' THEN 'an id or a slug' ELSE t END,
                       CASE WHEN nullable THEN ' or null' ELSE '' END),
                p_prefix || k);
        END IF;
        out := out || jsonb_build_object(k, v);
    END LOOP;
    RETURN out;
END $$;

-- A JSON string value that must not be empty (400 missing/invalid otherwise).
CREATE FUNCTION jd__need(p_obj jsonb, p_key text, p_prefix text DEFAULT '')
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF NOT (p_obj ? p_key) OR jsonb_typeof(p_obj -> p_key) = 'null' THEN
        PERFORM jd__fail(400, 'missing_field', format('field "%s" is required', p_key), p_prefix || p_key);
    END IF;
    RETURN p_obj ->> p_key;
END $$;

-- Pagination from ?limit=&offset= (default 50, at most 1000).
CREATE FUNCTION jd__page(p_query jsonb, OUT lim int, OUT off int)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    l text := p_query ->> 'limit';
    o text := p_query ->> 'offset';
BEGIN
    IF l IS NULL OR l = '' THEN
        lim := 50;
    ELSIF l ~ '^[0-9]{1,6}$' AND l::int BETWEEN 1 AND 1000 THEN
        lim := l::int;
    ELSE
        PERFORM jd__fail(400, 'invalid_value', 'limit must be an integer from 1 to 1000', 'limit');
    END IF;
    IF o IS NULL OR o = '' THEN
        off := 0;
    ELSIF o ~ '^[0-9]{1,9}$' THEN
        off := o::int;
    ELSE
        PERFORM jd__fail(400, 'invalid_value', 'offset must be a non-negative integer', 'offset');
    END IF;
END $$;

CREATE FUNCTION jd__list(p_items jsonb, p_total bigint, p_lim int, p_off int)
RETURNS jd_api_resp LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(200, jsonb_build_object('items', coalesce(p_items, '[]'), 'total', p_total,
                                       'limit', p_lim, 'offset', p_off))::jd_api_resp
$$;

-- An id from a path segment or query parameter (NULL when it is not a plausible id).
CREATE FUNCTION jd__id(p text) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p ~ '^[0-9]{1,18}$' THEN p::bigint END
$$;

-- A boolean query parameter (true/1/yes).
CREATE FUNCTION jd__qbool(p_query jsonb, p_key text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT lower(coalesce(p_query ->> p_key, '')) IN ('1', 'true', 'yes', 'on')
$$;

-- Strong random bytes (at most 32) without pgcrypto: gen_random_uuid() reads the server's strong
-- random source (122 random bits each); three of them are condensed with sha256.
CREATE FUNCTION jd__random_bytes(n int) RETURNS bytea LANGUAGE sql VOLATILE AS $$
    SELECT substring(sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())
                            || uuid_send(gen_random_uuid())) FROM 1 FOR n)
$$;

CREATE FUNCTION jd__base64url(b bytea) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT rtrim(translate(encode(b, 'base64'), E'+/\n', '-_'), '=')
$$;

-- A new site key: 24 random url-safe characters.
CREATE FUNCTION jd__new_site_key() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT jd__base64url(jd__random_bytes(18))
$$;

CREATE FUNCTION jd__token_hash(p_token text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(convert_to(p_token, 'UTF8'))
$$;

-- A slug from a name: lower case, runs of other characters become '-', at most 64 characters.
CREATE FUNCTION jd__slugify(p text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT nullif(trim(BOTH '-' FROM left(trim(BOTH '-' FROM
                  regexp_replace(lower(coalesce(p, '')), '[^a-z0-9]+', '-', 'g')), 64)), '')
$$;

-- Removes secrets from what goes into audit_log.detail.
CREATE FUNCTION jd__scrub(p jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p) = 'object' THEN
        (p - 'identity_secret' - 'token' - 'token_hash')
        || CASE WHEN p ? 'identity_secret'
                THEN jsonb_build_object('identity_secret_change', CASE WHEN jsonb_typeof(p -> 'identity_secret') = 'null'
                                                                THEN 'cleared' ELSE 'set' END)
                ELSE '{}' END
    ELSE coalesce(p, '{}') END
$$;

CREATE FUNCTION jd__audit(p_ctx jd_api_ctx, p_action text, p_type text, p_id text, p_site bigint,
                          p_detail jsonb DEFAULT '{}')
RETURNS void LANGUAGE sql AS $$
    INSERT INTO audit_log (actor, action, object_type, object_id, site_id, detail)
    VALUES (coalesce(p_ctx.actor, 'unknown'), p_action, p_type, p_id, p_site, jd__scrub(p_detail))
$$;

-- 403 unless the caller may see objects of site p_site.
CREATE FUNCTION jd__site_check(p_ctx jd_api_ctx, p_site bigint)
RETURNS void LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_ctx.site_id IS NOT NULL AND p_site IS DISTINCT FROM p_ctx.site_id THEN
        PERFORM jd__fail(403, 'forbidden', 'this token is restricted to another site');
    END IF;
END $$;

CREATE FUNCTION jd__need_admin(p_ctx jd_api_ctx)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_ctx.scope IS DISTINCT FROM 'admin' THEN
        PERFORM jd__fail(403, 'forbidden', 'this needs an admin-scope token');
    END IF;
END $$;

-- ===========================================================================================
-- 3. Model writes (validation shared by the API and map as code) and JSON shapes
-- ===========================================================================================

-- Inserts (p_id NULL) or updates row p_id of p_table with the columns named in p_values (already
-- checked). Tables with updated_at get it bumped. Returns the row id.
CREATE FUNCTION jd__save_row(p_table regclass, p_id bigint, p_values jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    cols text;
    sets text;
    has_updated boolean;
    new_id bigint;
BEGIN
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
           string_agg(format('%I = r.%I', a.attname, a.attname), ', ' ORDER BY a.attnum)
      INTO cols, sets
      FROM pg_attribute a
     WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> 'id'
       AND p_values ? a.attname::text;
    SELECT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = p_table
                   AND a.attname = 'updated_at' AND NOT a.attisdropped) INTO has_updated;
    IF p_id IS NULL THEN
        EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_record(NULL::%s, $1) RETURNING id',
                       p_table, cols, cols, p_table)
           INTO new_id USING p_values;
        RETURN new_id;
    END IF;
    IF sets IS NOT NULL THEN
        EXECUTE format('UPDATE %s t SET %s%s FROM jsonb_populate_record(NULL::%s, $1) r WHERE t.id = $2',
                       p_table, sets, CASE WHEN has_updated THEN ', updated_at = now()' ELSE '' END, p_table)
          USING p_values, p_id;
    END IF;
    RETURN p_id;
END $$;

-- 400 duplicate when another row of the same parent has this slug or (case-insensitively) name.
CREATE FUNCTION jd__dup_check(p_table regclass, p_parent_col text, p_parent bigint, p_id bigint,
                              p_col text, p_value text, p_what text, p_prefix text DEFAULT '')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    found boolean;
BEGIN
    IF p_value IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I = $1 AND lower(%I) = lower($2) AND id IS DISTINCT FROM $3)',
                   p_table, p_parent_col, p_col)
       INTO found USING p_parent, p_value, p_id;
    IF found THEN
        PERFORM jd__fail(400, 'duplicate', format('%s with %s "%s" already exists', p_what, p_col, p_value),
                         p_prefix || p_col);
    END IF;
END $$;

-- Moves row p_id to position p_pos among its siblings and renumbers them 1..n.
CREATE FUNCTION jd__reorder(p_table regclass, p_parent_col text, p_parent bigint, p_id bigint, p_pos int)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$
        WITH others AS (
            SELECT id, row_number() OVER (ORDER BY position, id) AS rn
              FROM %1$s WHERE %2$I = $1 AND id <> $2),
        target AS (SELECT greatest(1, least($3, (SELECT count(*) FROM others) + 1)) AS p)
        UPDATE %1$s t
           SET position = CASE WHEN t.id = $2 THEN target.p
                               WHEN o.rn < target.p THEN o.rn ELSE o.rn + 1 END
          FROM target, (SELECT id, rn FROM others UNION ALL SELECT $2, 0) o
         WHERE t.id = o.id AND t.position IS DISTINCT FROM
               CASE WHEN t.id = $2 THEN target.p WHEN o.rn < target.p THEN o.rn ELSE o.rn + 1 END$q$,
        p_table, p_parent_col)
    USING p_parent, p_id, p_pos;
END $$;

CREATE FUNCTION jd__next_position(p_table regclass, p_parent_col text, p_parent bigint)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    EXECUTE format('SELECT coalesce(max(position), 0) + 1 FROM %s WHERE %I = $1', p_table, p_parent_col)
       INTO n USING p_parent;
    RETURN n;
END $$;

-- Resolves a reference (id, slug or name) to a row of a map-scoped table. 400 with p_field when
-- it is unknown or belongs to another map.
CREATE FUNCTION jd__resolve(p_table regclass, p_map bigint, p_ref jsonb, p_what text, p_field text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r_id bigint;
    r_map bigint;
BEGIN
    IF p_ref IS NULL OR jsonb_typeof(p_ref) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_ref) = 'number' THEN
        IF (p_ref::text) !~ '^[0-9]{1,18}$' THEN
            PERFORM jd__fail(400, 'unknown_' || p_what, format('no %s with id %s', p_what, p_ref::text), p_field);
        END IF;
        EXECUTE format('SELECT id, map_id FROM %s WHERE id = $1', p_table) INTO r_id, r_map USING (p_ref::text)::bigint;
        IF r_id IS NULL THEN
            PERFORM jd__fail(400, 'unknown_' || p_what, format('no %s with id %s', p_what, p_ref::text), p_field);
        ELSIF r_map <> p_map THEN
            PERFORM jd__fail(400, 'wrong_map', format('%s %s belongs to another map', p_what, p_ref::text), p_field);
        END IF;
        RETURN r_id;
    ELSIF jsonb_typeof(p_ref) = 'string' THEN
        EXECUTE format('SELECT id FROM %s WHERE map_id = $1 AND (slug = $2 OR lower(name) = lower($2))
                         ORDER BY slug = $2 DESC, id LIMIT 1', p_table)
           INTO r_id USING p_map, p_ref #>> '{}';
        IF r_id IS NULL THEN
            PERFORM jd__fail(400, 'unknown_' || p_what,
                             format('unknown %s "%s" in this map', p_what, p_ref #>> '{}'), p_field);
        END IF;
        RETURN r_id;
    END IF;
    PERFORM jd__fail(400, 'invalid_type', format('%s must be an id or a slug', p_what), p_field);
    RETURN NULL;
END $$;

-- 400 touchpoint_not_allowed unless touchpoint p_tp may appear in stage p_stage.
CREATE FUNCTION jd__check_allowed(p_stage bigint, p_tp bigint, p_field text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_stage IS NOT NULL AND p_tp IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM touchpoint_stages WHERE stage_id = p_stage AND touchpoint_id = p_tp) THEN
        PERFORM jd__fail(400, 'touchpoint_not_allowed',
            format('touchpoint "%s" is not allowed in stage "%s"',
                   (SELECT slug FROM touchpoints WHERE id = p_tp), (SELECT slug FROM stages WHERE id = p_stage)),
            p_field);
    END IF;
END $$;

-- JSON shapes --------------------------------------------------------------------------------

-- A site as the API shows it: never the identity secret, only whether one is set.
CREATE FUNCTION jd__site_json(p_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT (to_jsonb(s) - 'identity_secret')
           || jsonb_build_object('identity_secret_set',
                                 coalesce(jsonb_typeof(to_jsonb(s) -> 'identity_secret') = 'string', false))
      FROM sites s WHERE s.id = p_id
$$;

CREATE FUNCTION jd__map_json(p_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(m) || jsonb_build_object('site_key', s.key)
      FROM maps m JOIN sites s ON s.id = m.site_id WHERE m.id = p_id
$$;

CREATE FUNCTION jd__touchpoint_json(p_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(t) || jsonb_build_object('stages',
        (SELECT coalesce(jsonb_agg(s.slug ORDER BY s.position, s.id), '[]')
           FROM touchpoint_stages ts JOIN stages s ON s.id = ts.stage_id WHERE ts.touchpoint_id = t.id))
      FROM touchpoints t WHERE t.id = p_id
$$;

CREATE FUNCTION jd__question_json(p_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(q) || jsonb_build_object('stage', s.slug, 'touchpoint', t.slug)
      FROM questions q LEFT JOIN stages s ON s.id = q.stage_id
      LEFT JOIN touchpoints t ON t.id = q.touchpoint_id WHERE q.id = p_id
$$;

CREATE FUNCTION jd__rule_json(p_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(r) || jsonb_build_object('stage', s.slug, 'touchpoint', t.slug, 'persona', p.slug)
      FROM tagging_rules r LEFT JOIN stages s ON s.id = r.stage_id
      LEFT JOIN touchpoints t ON t.id = r.touchpoint_id LEFT JOIN personas p ON p.id = r.persona_id
     WHERE r.id = p_id
$$;

CREATE FUNCTION jd__token_json(p_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT (to_jsonb(t) - 'token_hash')
           || jsonb_build_object('active', t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()))
      FROM admin_tokens t WHERE t.id = p_id
$$;

-- Writes ---------------------------------------------------------------------------------------
-- Each jd__put_* inserts (p_id NULL) or updates one row from a client object, validating it, and
-- returns the id. p_prefix names the field in errors ("stages[2]." inside a map document).

CREATE FUNCTION jd__put_site(p_id bigint, p_body jsonb, p_prefix text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := jd__check(p_body, '{"name":"text","key":"text","allowed_origins":"textarray",
        "consent_mode":"text","retention_days":"int?","redact":"text","store_ip":"bool",
        "identity_secret":"text?"}', p_prefix);
    secret jsonb := v -> 'identity_secret';
    bad text;
    new_id bigint;
BEGIN
    IF p_id IS NULL THEN
        PERFORM jd__need(v, 'name', p_prefix);
        IF NOT v ? 'key' THEN
            v := v || jsonb_build_object('key', jd__new_site_key());
        END IF;
    ELSIF v ? 'key' AND v ->> 'key' IS DISTINCT FROM (SELECT key FROM sites WHERE id = p_id) THEN
        PERFORM jd__fail(400, 'immutable', 'a site key cannot be changed', p_prefix || 'key');
    END IF;
    IF v ? 'key' AND (v ->> 'key') !~ '^[A-Za-z0-9_-]{8,64}$' THEN
        PERFORM jd__fail(400, 'invalid_value', 'key must be 8 to 64 characters from A-Z a-z 0-9 _ -', p_prefix || 'key');
    END IF;
    IF v ? 'consent_mode' AND NOT (v ->> 'consent_mode') IN ('none-required', 'opt-in', 'cookieless') THEN
        PERFORM jd__fail(400, 'invalid_value', 'consent_mode must be none-required, opt-in or cookieless', p_prefix || 'consent_mode');
    END IF;
    IF v ? 'redact' AND NOT (v ->> 'redact') IN ('off', 'ingest', 'export') THEN
        PERFORM jd__fail(400, 'invalid_value', 'redact must be off, ingest or export', p_prefix || 'redact');
    END IF;
    IF v ? 'retention_days' AND (v ->> 'retention_days')::int < 1 THEN
        PERFORM jd__fail(400, 'invalid_value', 'retention_days must be at least 1 (or null to keep forever)', p_prefix || 'retention_days');
    END IF;
    SELECT o INTO bad FROM jsonb_array_elements_text(coalesce(v -> 'allowed_origins', '[]')) o
     WHERE o !~ '^https?://[^/?#\s]+$' LIMIT 1;
    IF bad IS NOT NULL THEN
        PERFORM jd__fail(400, 'invalid_value', format('"%s" is not an origin (scheme://host[:port])', bad),
                         p_prefix || 'allowed_origins');
    END IF;
    IF secret IS NOT NULL AND jsonb_typeof(secret) = 'string' AND length(secret #>> '{}') < 16 THEN
        PERFORM jd__fail(400, 'invalid_value', 'identity_secret must be at least 16 characters', p_prefix || 'identity_secret');
    END IF;
    new_id := jd__save_row('sites', p_id, v - 'identity_secret');
    IF secret IS NOT NULL THEN
        -- identity_secret arrives with migration 010: resolved at run time, never returned.
        EXECUTE 'UPDATE sites SET identity_secret = $1, updated_at = now() WHERE id = $2'
          USING secret #>> '{}', new_id;
    END IF;
    RETURN new_id;
END $$;

-- The default stages and touchpoints of a new map (every touchpoint allowed in every stage).
CREATE FUNCTION jd__map_defaults(p_map bigint, p_stages boolean, p_touchpoints boolean)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO stages (map_id, slug, name, meaning, position)
    SELECT p_map, v.slug, v.name, v.meaning, v.pos
      FROM (VALUES ('awareness', 'Awareness', 'The customer learns that the product exists', 1),
                   ('interest', 'Interest', 'The customer wants to know more about it', 2),
                   ('consideration', 'Consideration', 'The customer compares it with the alternatives', 3),
                   ('purchase', 'Purchase', 'The customer decides and buys', 4),
                   ('advocacy', 'Advocacy', 'The customer uses it, recommends it or reviews it', 5))
           AS v(slug, name, meaning, pos)
     WHERE p_stages;
    INSERT INTO touchpoints (map_id, slug, name, channel, position)
    SELECT p_map, v.slug, v.name, v.channel, v.pos
      FROM (VALUES ('marketing-content', 'Marketing content', 'owned', 1),
                   ('paid-ads', 'Paid ads', 'paid', 2),
                   ('social-media', 'Social media', 'earned', 3),
                   ('third-party-reviews', 'Third-party reviews', 'earned', 4),
                   ('website', 'Website', 'owned', 5),
                   ('email-marketing', 'Email marketing', 'owned', 6),
                   ('phone-calls', 'Phone calls', 'service', 7),
                   ('live-chat', 'Live chat', 'service', 8),
                   ('in-person', 'In-person', 'service', 9),
                   ('product-onboarding', 'Product onboarding', 'product', 10),
                   ('customer-self-service', 'Customer self-service', 'product', 11))
           AS v(slug, name, channel, pos)
     WHERE p_touchpoints;
    INSERT INTO touchpoint_stages (touchpoint_id, stage_id)
    SELECT t.id, s.id FROM touchpoints t JOIN stages s ON s.map_id = t.map_id
     WHERE t.map_id = p_map AND p_touchpoints
    ON CONFLICT DO NOTHING;
$$;

CREATE FUNCTION jd__put_map(p_site bigint, p_id bigint, p_body jsonb, p_prefix text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := jd__check(p_body, '{"slug":"text","name":"text","goal":"text","scope":"text",
        "customer_group":"text","min_evidence":"int"}', p_prefix);
BEGIN
    IF p_id IS NULL THEN
        PERFORM jd__need(v, 'name', p_prefix);
        IF NOT v ? 'slug' THEN
            v := v || jsonb_build_object('slug', jd__slugify(v ->> 'name'));
        END IF;
        v := v || jsonb_build_object('site_id', p_site);
    END IF;
    PERFORM jd__dup_check('maps', 'site_id', p_site, p_id, 'slug', v ->> 'slug', 'a map', p_prefix);
    PERFORM jd__dup_check('maps', 'site_id', p_site, p_id, 'name', v ->> 'name', 'a map', p_prefix);
    RETURN jd__save_row('maps', p_id, v);
END $$;

-- Shared by stages, personas, obstacles and touchpoints: slug from name, duplicate checks,
-- position at the end unless given.
CREATE FUNCTION jd__put_named(p_table regclass, p_what text, p_map bigint, p_id bigint, v jsonb,
                              p_prefix text, p_reorder boolean)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
    pos int;
BEGIN
    IF p_id IS NULL THEN
        PERFORM jd__need(v, 'name', p_prefix);
        IF NOT v ? 'slug' OR jsonb_typeof(v -> 'slug') = 'null' THEN
            v := v || jsonb_build_object('slug', jd__slugify(v ->> 'name'));
        END IF;
        v := v || jsonb_build_object('map_id', p_map);
    END IF;
    PERFORM jd__dup_check(p_table, 'map_id', p_map, p_id, 'slug', v ->> 'slug', p_what, p_prefix);
    PERFORM jd__dup_check(p_table, 'map_id', p_map, p_id, 'name', v ->> 'name', p_what, p_prefix);
    pos := (v ->> 'position')::int;
    IF p_id IS NULL AND (pos IS NULL OR p_reorder) THEN
        v := v || jsonb_build_object('position', jd__next_position(p_table, 'map_id', p_map));
    ELSIF p_reorder THEN
        v := v - 'position';
    END IF;
    new_id := jd__save_row(p_table, p_id, v);
    IF p_reorder AND pos IS NOT NULL THEN
        PERFORM jd__reorder(p_table, 'map_id', p_map, new_id, pos);
    END IF;
    RETURN new_id;
END $$;

CREATE FUNCTION jd__put_stage(p_map bigint, p_id bigint, p_body jsonb, p_prefix text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RETURN jd__put_named('stages', 'a stage', p_map, p_id,
        jd__check(p_body, '{"slug":"text","name":"text","meaning":"text","position":"int"}', p_prefix),
        p_prefix, true);
END $$;

CREATE FUNCTION jd__put_obstacle(p_map bigint, p_id bigint, p_body jsonb, p_prefix text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RETURN jd__put_named('obstacles', 'an obstacle', p_map, p_id,
        jd__check(p_body, '{"slug":"text","name":"text","description":"text","position":"int"}', p_prefix),
        p_prefix, false);
END $$;

CREATE FUNCTION jd__put_persona(p_map bigint, p_id bigint, p_body jsonb, p_prefix text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := jd__check(p_body, '{"slug":"text","name":"text","age_min":"int?","age_max":"int?",
        "job_role":"text","family_status":"text","professional_goals":"text",
        "personal_interests":"text","description":"text","data_sources":"text","position":"int"}', p_prefix);
    old personas;
    amin int;
    amax int;
BEGIN
    SELECT * INTO old FROM personas WHERE id = p_id;
    amin := CASE WHEN v ? 'age_min' THEN (v ->> 'age_min')::int ELSE old.age_min END;
    amax := CASE WHEN v ? 'age_max' THEN (v ->> 'age_max')::int ELSE old.age_max END;
    IF amin < 0 OR amin > 130 THEN
        PERFORM jd__fail(400, 'invalid_value', 'age_min must be from 0 to 130', p_prefix || 'age_min');
    END IF;
    IF amax < 0 OR amax > 130 THEN
        PERFORM jd__fail(400, 'invalid_value', 'age_max must be from 0 to 130', p_prefix || 'age_max');
    END IF;
    IF amin > amax THEN
        PERFORM jd__fail(400, 'invalid_range', format('age_min (%s) is greater than age_max (%s)', amin, amax),
                         p_prefix || 'age_min');
    END IF;
    RETURN jd__put_named('personas', 'a persona', p_map, p_id, v, p_prefix, false);
END $$;

-- Touchpoints carry `stages`, the stage references they are allowed in (default: every stage).
CREATE FUNCTION jd__put_touchpoint(p_map bigint, p_id bigint, p_body jsonb, p_prefix text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := jd__check(p_body, '{"slug":"text","name":"text","channel":"text","position":"int",
        "stages":"array"}', p_prefix);
    stage_ids bigint[];
    new_id bigint;
    i int := 0;
    e jsonb;
    used record;
BEGIN
    IF v ? 'stages' THEN
        stage_ids := '{}';
        FOR e IN SELECT * FROM jsonb_array_elements(v -> 'stages') LOOP
            stage_ids := stage_ids || jd__resolve('stages', p_map, e, 'stage', format('%sstages[%s]', p_prefix, i));
            i := i + 1;
        END LOOP;
    END IF;
    new_id := jd__put_named('touchpoints', 'a touchpoint', p_map, p_id, v - 'stages', p_prefix, false);
    IF p_id IS NULL AND stage_ids IS NULL THEN
        SELECT array_agg(id) INTO stage_ids FROM stages WHERE map_id = p_map;
    END IF;
    IF stage_ids IS NOT NULL THEN
        SELECT s.slug AS stage, q.key INTO used
          FROM questions q JOIN stages s ON s.id = q.stage_id
         WHERE q.touchpoint_id = new_id AND q.retired_at IS NULL AND NOT (q.stage_id = ANY (stage_ids))
         LIMIT 1;
        IF FOUND THEN
            PERFORM jd__fail(409, 'in_use', format('question "%s" measures this touchpoint in stage "%s"; change it first',
                                                  used.key, used.stage), p_prefix || 'stages');
        END IF;
        DELETE FROM touchpoint_stages WHERE touchpoint_id = new_id AND NOT (stage_id = ANY (stage_ids));
        INSERT INTO touchpoint_stages (touchpoint_id, stage_id)
        SELECT new_id, unnest(stage_ids) ON CONFLICT DO NOTHING;
    END IF;
    RETURN new_id;
END $$;

CREATE FUNCTION jd__put_resource(p_stage bigint, p_id bigint, p_body jsonb, p_prefix text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := jd__check(p_body, '{"kind":"text","name":"text","notes":"text","owner":"text","position":"int"}', p_prefix);
BEGIN
    IF p_id IS NULL THEN
        PERFORM jd__need(v, 'kind', p_prefix);
        PERFORM jd__need(v, 'name', p_prefix);
        v := v || jsonb_build_object('stage_id', p_stage);
        IF NOT v ? 'position' THEN
            v := v || jsonb_build_object('position', jd__next_position('stage_resources', 'stage_id', p_stage));
        END IF;
    END IF;
    IF v ? 'kind' AND NOT (v ->> 'kind') IN ('department', 'technology', 'process') THEN
        PERFORM jd__fail(400, 'invalid_value', 'kind must be department, technology or process', p_prefix || 'kind');
    END IF;
    PERFORM jd__dup_check('stage_resources', 'stage_id', p_stage, p_id, 'name', v ->> 'name', 'a resource', p_prefix);
    RETURN jd__save_row('stage_resources', p_id, v);
END $$;

-- 400 unless p_re compiles (PostgreSQL's regex dialect is close to the widget's JavaScript one).
CREATE FUNCTION jd__check_regex(p_re text, p_field text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM '' ~ p_re;
EXCEPTION WHEN invalid_regular_expression THEN
    PERFORM jd__fail(400, 'invalid_value', 'invalid regular expression: ' || SQLERRM, p_field);
END $$;

-- A survey's trigger: who sees it and when (see web-widget/src/index.js, eligible()).
CREATE FUNCTION jd__check_trigger(p_map bigint, t jsonb, p_field text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k text;
    v jsonb;
BEGIN
    FOR k, v IN SELECT * FROM jsonb_each(t) LOOP
        CASE k
        WHEN 'url' THEN
            IF jsonb_typeof(v) <> 'object' OR jsonb_typeof(v -> 'value') IS DISTINCT FROM 'string' THEN
                PERFORM jd__fail(400, 'invalid_value', 'trigger.url must be {"op": ..., "value": "..."}', p_field || '.url');
            END IF;
            IF NOT coalesce(v ->> 'op', 'contains') IN ('exact', 'contains', 'not_contains', 'starts_with', 'ends_with', 'regex') THEN
                PERFORM jd__fail(400, 'invalid_value',
                    'trigger.url.op must be exact, contains, not_contains, starts_with, ends_with or regex', p_field || '.url.op');
            END IF;
            IF v ->> 'op' = 'regex' THEN
                PERFORM jd__check_regex(v ->> 'value', p_field || '.url.value');
            END IF;
        WHEN 'percent', 'scroll_pct' THEN
            IF jsonb_typeof(v) <> 'number' OR (v::text)::numeric NOT BETWEEN 0 AND 100 THEN
                PERFORM jd__fail(400, 'invalid_value', format('trigger.%s must be a number from 0 to 100', k), p_field || '.' || k);
            END IF;
        WHEN 'delay_ms', 'cooldown_days' THEN
            IF jsonb_typeof(v) <> 'number' OR (v::text)::numeric < 0 THEN
                PERFORM jd__fail(400, 'invalid_value', format('trigger.%s must be a number >= 0', k), p_field || '.' || k);
            END IF;
        WHEN 'exit_intent' THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                PERFORM jd__fail(400, 'invalid_type', 'trigger.exit_intent must be a boolean', p_field || '.exit_intent');
            END IF;
        WHEN 'event' THEN
            IF jsonb_typeof(v) <> 'string' THEN
                PERFORM jd__fail(400, 'invalid_type', 'trigger.event must be a string', p_field || '.event');
            END IF;
        WHEN 'attributes' THEN
            IF jsonb_typeof(v) <> 'object' THEN
                PERFORM jd__fail(400, 'invalid_type', 'trigger.attributes must be an object', p_field || '.attributes');
            END IF;
        WHEN 'persona' THEN
            IF jsonb_typeof(v) <> 'string' OR NOT EXISTS (SELECT 1 FROM personas WHERE map_id = p_map AND slug = v #>> '{}') THEN
                PERFORM jd__fail(400, 'unknown_persona', format('trigger.persona %s is not a persona slug of this map', v::text),
                                 p_field || '.persona');
            END IF;
        WHEN 'stage' THEN
            IF jsonb_typeof(v) <> 'string' OR NOT EXISTS (SELECT 1 FROM stages WHERE map_id = p_map AND slug = v #>> '{}') THEN
                PERFORM jd__fail(400, 'unknown_stage', format('trigger.stage %s is not a stage slug of this map', v::text),
                                 p_field || '.stage');
            END IF;
        ELSE
            PERFORM jd__fail(400, 'unknown_field', format('unknown trigger field "%s"', k), p_field || '.' || k);
        END CASE;
    END LOOP;
END $$;

-- 400 no_questions when a live survey has no live question (the widget needs at least one).
CREATE FUNCTION jd__check_live(p_survey bigint, p_prefix text DEFAULT '')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM surveys s WHERE s.id = p_survey AND s.status = 'live'
                  AND NOT EXISTS (SELECT 1 FROM questions q WHERE q.survey_id = s.id AND q.retired_at IS NULL)) THEN
        PERFORM jd__fail(400, 'no_questions', 'a live survey needs at least one question; add questions first',
                         p_prefix || 'status');
    END IF;
END $$;

CREATE FUNCTION jd__put_survey(p_map bigint, p_id bigint, p_body jsonb, p_prefix text DEFAULT '',
                               p_check_live boolean DEFAULT true)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := jd__check(p_body, '{"slug":"text","title":"text","status":"text","locale":"text",
        "display":"object","trigger":"object"}', p_prefix);
    new_id bigint;
BEGIN
    IF p_id IS NULL THEN
        PERFORM jd__need(v, 'title', p_prefix);
        IF NOT v ? 'slug' THEN
            v := v || jsonb_build_object('slug', jd__slugify(v ->> 'title'));
        END IF;
        v := v || jsonb_build_object('map_id', p_map);
    END IF;
    IF v ? 'status' AND NOT (v ->> 'status') IN ('draft', 'live', 'archived') THEN
        PERFORM jd__fail(400, 'invalid_value', 'status must be draft, live or archived', p_prefix || 'status');
    END IF;
    IF v ? 'display' THEN
        IF NOT coalesce(v #>> '{display,mode}', 'popover') IN ('popover', 'modal', 'inline') THEN
            PERFORM jd__fail(400, 'invalid_value', 'display.mode must be popover, modal or inline', p_prefix || 'display.mode');
        END IF;
        IF NOT coalesce(v #>> '{display,corner}', 'bottom-right') IN ('top-left', 'top-right', 'bottom-left', 'bottom-right') THEN
            PERFORM jd__fail(400, 'invalid_value', 'display.corner must be top-left, top-right, bottom-left or bottom-right',
                             p_prefix || 'display.corner');
        END IF;
    END IF;
    IF v ? 'trigger' THEN
        PERFORM jd__check_trigger(p_map, v -> 'trigger', p_prefix || 'trigger');
    END IF;
    PERFORM jd__dup_check('surveys', 'map_id', p_map, p_id, 'slug', v ->> 'slug', 'a survey', p_prefix);
    new_id := jd__save_row('surveys', p_id, v);
    IF p_check_live THEN
        PERFORM jd__check_live(new_id, p_prefix);
    END IF;
    RETURN new_id;
END $$;

-- Branching: {"question": key, "equals": v} | {"question": key, "in": [v, ...]} |
-- {"question": key, "min": a, "max": b} (a score range of an emotion/NPS/CSAT question; stored
-- with the equivalent "in" list, which is what the widget evaluates).
CREATE FUNCTION jd__norm_show_if(j jsonb, p_field text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    k text;
    lo int;
    hi int;
BEGIN
    IF j IS NULL OR jsonb_typeof(j) = 'null' THEN
        RETURN NULL;
    END IF;
    FOR k IN SELECT jsonb_object_keys(j) LOOP
        IF NOT k IN ('question', 'equals', 'in', 'min', 'max') THEN
            PERFORM jd__fail(400, 'unknown_field', format('unknown show_if field "%s"', k), p_field || '.' || k);
        END IF;
    END LOOP;
    IF jsonb_typeof(j -> 'question') IS DISTINCT FROM 'string' THEN
        PERFORM jd__fail(400, 'missing_field', 'show_if.question (the key of another question) is required',
                         p_field || '.question');
    END IF;
    IF j ? 'min' OR j ? 'max' THEN
        IF jsonb_typeof(j -> 'min') IS DISTINCT FROM 'number' OR jsonb_typeof(j -> 'max') IS DISTINCT FROM 'number'
           OR (j ->> 'min') !~ '^-?[0-9]{1,3}$' OR (j ->> 'max') !~ '^-?[0-9]{1,3}$' THEN
            PERFORM jd__fail(400, 'invalid_value', 'show_if.min and show_if.max must both be integers',
                             p_field || CASE WHEN j ? 'min' THEN '.max' ELSE '.min' END);
        END IF;
        lo := (j ->> 'min')::int;
        hi := (j ->> 'max')::int;
        IF lo > hi THEN
            PERFORM jd__fail(400, 'invalid_range', format('show_if.min (%s) is greater than show_if.max (%s)', lo, hi),
                             p_field || '.min');
        END IF;
        IF lo < 0 OR hi > 10 THEN
            PERFORM jd__fail(400, 'invalid_value', 'a score range lies within 0..10', p_field || '.min');
        END IF;
        RETURN jsonb_build_object('question', j -> 'question', 'min', lo, 'max', hi,
                                  'in', (SELECT jsonb_agg(g::text ORDER BY g) FROM generate_series(lo, hi) g));
    ELSIF j ? 'in' THEN
        IF jsonb_typeof(j -> 'in') <> 'array' OR jsonb_array_length(j -> 'in') = 0 OR EXISTS (
               SELECT 1 FROM jsonb_array_elements(j -> 'in') e WHERE jsonb_typeof(e) IN ('object', 'array', 'null')) THEN
            PERFORM jd__fail(400, 'invalid_value', 'show_if.in must be a non-empty array of values', p_field || '.in');
        END IF;
        RETURN jsonb_build_object('question', j -> 'question', 'in', j -> 'in');
    ELSIF j ? 'equals' THEN
        IF jsonb_typeof(j -> 'equals') IN ('object', 'array', 'null') THEN
            PERFORM jd__fail(400, 'invalid_value', 'show_if.equals must be a single value', p_field || '.equals');
        END IF;
        RETURN jsonb_build_object('question', j -> 'question', 'equals', j -> 'equals');
    END IF;
    PERFORM jd__fail(400, 'missing_field', 'show_if needs "equals", "in" or "min"/"max"', p_field || '.equals');
    RETURN NULL;
END $$;

-- Every show_if of the survey's live questions refers to another live question, score ranges
-- refer to score questions, and no chain of conditions loops back.
CREATE FUNCTION jd__check_branching(p_survey bigint, p_field text DEFAULT 'show_if')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT q.key, q.show_if ->> 'question' AS target INTO r
      FROM questions q
     WHERE q.survey_id = p_survey AND q.retired_at IS NULL AND q.show_if IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM questions t WHERE t.survey_id = p_survey AND t.retired_at IS NULL
                          AND t.key = q.show_if ->> 'question')
     LIMIT 1;
    IF FOUND THEN
        PERFORM jd__fail(400, 'unknown_question',
            format('question "%s" shows only if unknown question "%s" matches', r.key, r.target), p_field || '.question');
    END IF;
    SELECT q.key, t.kind INTO r
      FROM questions q JOIN questions t ON t.survey_id = q.survey_id AND t.retired_at IS NULL
                                       AND t.key = q.show_if ->> 'question'
     WHERE q.survey_id = p_survey AND q.retired_at IS NULL AND q.show_if ? 'min'
       AND NOT t.kind IN ('emotion', 'nps', 'csat')
     LIMIT 1;
    IF FOUND THEN
        PERFORM jd__fail(400, 'invalid_value',
            format('question "%s" has a score range condition on a %s question', r.key, r.kind), p_field || '.min');
    END IF;
    WITH RECURSIVE g AS (
        SELECT key, show_if ->> 'question' AS dep FROM questions
         WHERE survey_id = p_survey AND retired_at IS NULL),
    walk(start, cur, depth) AS (
        SELECT key, dep, 1 FROM g WHERE dep IS NOT NULL
        UNION ALL
        SELECT w.start, g.dep, w.depth + 1 FROM walk w JOIN g ON g.key = w.cur
         WHERE g.dep IS NOT NULL AND w.cur <> w.start AND w.depth < 1000)
    SELECT start AS key INTO r FROM walk WHERE cur = start LIMIT 1;
    IF FOUND THEN
        PERFORM jd__fail(400, 'cycle', format('the show_if conditions starting at question "%s" form a cycle', r.key),
                         p_field || '.question');
    END IF;
END $$;

CREATE FUNCTION jd__default_lane(p_kind text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_kind WHEN 'emotion' THEN 'emotions' WHEN 'obstacle' THEN 'obstacles'
                       WHEN 'text' THEN 'thoughts' WHEN 'action' THEN 'actions' WHEN 'goal' THEN 'goal' END
$$;

-- Questions are immutable once answered: a change to an answered question retires it and adds
-- version + 1 under the same key (old answers keep pointing at the old row); an unanswered one is
-- updated in place. A change that changes nothing writes nothing.
CREATE FUNCTION jd__put_question(p_survey bigint, p_id bigint, p_body jsonb, p_prefix text DEFAULT '',
                                 p_check boolean DEFAULT true)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := jd__check(p_body, '{"key":"text","position":"int","kind":"text","lane":"text?",
        "prompt":"text","required":"bool","options":"array?","stage":"ref?","touchpoint":"ref?",
        "stage_id":"int?","touchpoint_id":"int?","show_if":"object?"}', p_prefix);
    map_id bigint := (SELECT s.map_id FROM surveys s WHERE s.id = p_survey);
    old questions;
    n questions;
    e jsonb;
    i int := 0;
    seen text[] := '{}';
    new_id bigint;
BEGIN
    IF p_id IS NOT NULL THEN
        SELECT * INTO old FROM questions WHERE id = p_id;
        IF old.retired_at IS NOT NULL THEN
            PERFORM jd__fail(409, 'retired', 'this question version is retired; change the live version instead');
        END IF;
        n := old;
    END IF;
    n.kind := coalesce(v ->> 'kind', old.kind);
    IF n.kind IS NULL THEN
        PERFORM jd__need(v, 'kind', p_prefix);
    ELSIF NOT n.kind IN ('emotion', 'single_choice', 'multi_choice', 'obstacle', 'text', 'action', 'nps', 'csat', 'goal') THEN
        PERFORM jd__fail(400, 'invalid_value',
            'kind must be emotion, single_choice, multi_choice, obstacle, text, action, nps, csat or goal', p_prefix || 'kind');
    END IF;
    n.prompt := CASE WHEN v ? 'prompt' THEN v ->> 'prompt' ELSE old.prompt END;
    IF n.prompt IS NULL THEN
        PERFORM jd__need(v, 'prompt', p_prefix);
    END IF;
    n.key := coalesce(v ->> 'key', old.key, jd__slugify(left(n.prompt, 48)), 'q');
    IF n.key !~ '^[a-z0-9][a-z0-9_-]{0,63}$' THEN
        PERFORM jd__fail(400, 'invalid_value', 'key must match ^[a-z0-9][a-z0-9_-]{0,63}$', p_prefix || 'key');
    END IF;
    n.lane := CASE WHEN v ? 'lane' THEN v ->> 'lane' WHEN p_id IS NOT NULL THEN old.lane ELSE jd__default_lane(n.kind) END;
    IF NOT n.lane IN ('actions', 'thoughts', 'emotions', 'obstacles', 'goal') THEN
        PERFORM jd__fail(400, 'invalid_value', 'lane must be actions, thoughts, emotions, obstacles, goal or null', p_prefix || 'lane');
    END IF;
    n.required := coalesce((v ->> 'required')::boolean, old.required, false);
    n.position := coalesce((v ->> 'position')::int, old.position,
                           (SELECT coalesce(max(q.position), 0) + 1 FROM questions q
                             WHERE q.survey_id = p_survey AND q.retired_at IS NULL));
    n.options := CASE WHEN v ? 'options' THEN nullif(v -> 'options', 'null'::jsonb) ELSE old.options END;
    n.stage_id := CASE WHEN v ? 'stage' THEN jd__resolve('stages', map_id, v -> 'stage', 'stage', p_prefix || 'stage')
                       WHEN v ? 'stage_id' THEN jd__resolve('stages', map_id, v -> 'stage_id', 'stage', p_prefix || 'stage_id')
                       ELSE old.stage_id END;
    n.touchpoint_id := CASE WHEN v ? 'touchpoint' THEN jd__resolve('touchpoints', map_id, v -> 'touchpoint', 'touchpoint', p_prefix || 'touchpoint')
                            WHEN v ? 'touchpoint_id' THEN jd__resolve('touchpoints', map_id, v -> 'touchpoint_id', 'touchpoint', p_prefix || 'touchpoint_id')
                            ELSE old.touchpoint_id END;
    PERFORM jd__check_allowed(n.stage_id, n.touchpoint_id, p_prefix || 'touchpoint');
    IF n.kind IN ('single_choice', 'multi_choice') AND (n.options IS NULL OR jsonb_array_length(n.options) = 0) THEN
        PERFORM jd__fail(400, 'missing_field', 'a choice question needs at least one option', p_prefix || 'options');
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(coalesce(n.options, '[]')) LOOP
        IF jsonb_typeof(e) <> 'object' OR jsonb_typeof(e -> 'value') IS DISTINCT FROM 'string' OR e ->> 'value' = ''
           OR (e ? 'label' AND jsonb_typeof(e -> 'label') <> 'string')
           OR EXISTS (SELECT 1 FROM jsonb_object_keys(e) k WHERE NOT k IN ('value', 'label', 'persona')) THEN
            PERFORM jd__fail(400, 'invalid_value', 'an option is {"value": "...", "label": "...", "persona": "<slug>"}',
                             format('%soptions[%s]', p_prefix, i));
        END IF;
        IF e ? 'persona' THEN  -- a screener option that assigns a persona of this map
            PERFORM jd__resolve('personas', map_id, e -> 'persona', 'persona', format('%soptions[%s].persona', p_prefix, i));
        END IF;
        IF (e ->> 'value') = ANY (seen) THEN
            PERFORM jd__fail(400, 'duplicate', format('option value "%s" appears twice', e ->> 'value'),
                             format('%soptions[%s].value', p_prefix, i));
        END IF;
        seen := seen || (e ->> 'value');
        i := i + 1;
    END LOOP;
    n.show_if := CASE WHEN v ? 'show_if' THEN jd__norm_show_if(v -> 'show_if', p_prefix || 'show_if') ELSE old.show_if END;
    IF p_id IS NOT NULL AND (n.key, n.position, n.kind, n.lane, n.prompt, n.required, n.options, n.stage_id,
                             n.touchpoint_id, n.show_if)
        IS NOT DISTINCT FROM (old.key, old.position, old.kind, old.lane, old.prompt, old.required, old.options,
                              old.stage_id, old.touchpoint_id, old.show_if) THEN
        RETURN p_id;
    END IF;
    IF EXISTS (SELECT 1 FROM questions q WHERE q.survey_id = p_survey AND q.key = n.key AND q.retired_at IS NULL
                  AND q.id IS DISTINCT FROM p_id) THEN
        PERFORM jd__fail(400, 'duplicate', format('a question with key "%s" already exists in this survey', n.key),
                         p_prefix || 'key');
    END IF;
    IF p_id IS NOT NULL AND EXISTS (SELECT 1 FROM answers a WHERE a.question_id = p_id) THEN
        IF n.key <> old.key THEN
            PERFORM jd__fail(400, 'immutable', 'the key of an answered question cannot change', p_prefix || 'key');
        END IF;
        UPDATE questions SET retired_at = now() WHERE id = p_id;
        INSERT INTO questions (survey_id, key, version, position, kind, lane, prompt, required, options,
                               stage_id, touchpoint_id, show_if)
        VALUES (p_survey, n.key, old.version + 1, n.position, n.kind, n.lane, n.prompt, n.required, n.options,
                n.stage_id, n.touchpoint_id, n.show_if)
        RETURNING id INTO new_id;
    ELSIF p_id IS NOT NULL THEN
        UPDATE questions SET key = n.key, position = n.position, kind = n.kind, lane = n.lane, prompt = n.prompt,
               required = n.required, options = n.options, stage_id = n.stage_id,
               touchpoint_id = n.touchpoint_id, show_if = n.show_if
         WHERE id = p_id;
        new_id := p_id;
    ELSE
        INSERT INTO questions (survey_id, key, version, position, kind, lane, prompt, required, options,
                               stage_id, touchpoint_id, show_if)
        VALUES (p_survey, n.key,
                (SELECT coalesce(max(q.version), 0) + 1 FROM questions q WHERE q.survey_id = p_survey AND q.key = n.key),
                n.position, n.kind, n.lane, n.prompt, n.required, n.options, n.stage_id, n.touchpoint_id, n.show_if)
        RETURNING id INTO new_id;
    END IF;
    IF p_check THEN
        PERFORM jd__check_branching(p_survey, p_prefix || 'show_if');
    END IF;
    RETURN new_id;
END $$;

-- A tagging rule of a site. url/referrer: {"pattern": "...", "op": "contains|exact|not_contains|
-- starts_with|ends_with|regex"}; utm: {"source"|"medium"|"campaign"|"term"|"content": "..."};
-- persona_attribute: {"attribute": "plan", "value": "pro"}; screener: {"survey": slug|id,
-- "question": key, "equals"|"in"|"min"+"max": ...}. Stage, touchpoint and persona must belong to
-- the rule's map (given as `map`, or the site's only map).
CREATE FUNCTION jd__put_rule(p_site bigint, p_id bigint, p_body jsonb, p_prefix text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := jd__check(p_body, '{"kind":"text","match":"object","map":"ref?","stage":"ref?",
        "touchpoint":"ref?","persona":"ref?","position":"int","stage_id":"int?","touchpoint_id":"int?",
        "persona_id":"int?"}', p_prefix);
    old tagging_rules;
    n tagging_rules;
    k text;
    sv_id bigint;
BEGIN
    IF p_id IS NOT NULL THEN
        SELECT * INTO old FROM tagging_rules WHERE id = p_id;
        n := old;
    END IF;
    n.site_id := p_site;
    n.kind := coalesce(v ->> 'kind', old.kind);
    IF n.kind IS NULL THEN
        PERFORM jd__need(v, 'kind', p_prefix);
    ELSIF NOT n.kind IN ('url', 'referrer', 'utm', 'persona_attribute', 'screener') THEN
        PERFORM jd__fail(400, 'invalid_value', 'kind must be url, referrer, utm, persona_attribute or screener', p_prefix || 'kind');
    END IF;
    n.match := coalesce(v -> 'match', old.match, '{}');
    n.position := coalesce((v ->> 'position')::int, old.position,
                           jd__next_position('tagging_rules', 'site_id', p_site));
    IF v ? 'map' AND jsonb_typeof(v -> 'map') <> 'null' THEN
        SELECT id INTO n.map_id FROM maps
         WHERE site_id = p_site AND (CASE WHEN jsonb_typeof(v -> 'map') = 'number'
                                          THEN id::text = v ->> 'map' ELSE slug = v ->> 'map' END);
        IF n.map_id IS NULL THEN
            PERFORM jd__fail(400, 'unknown_map', format('map %s is not a map of this site', v -> 'map'), p_prefix || 'map');
        END IF;
    ELSIF v ? 'map' THEN
        n.map_id := NULL;
    ELSIF n.map_id IS NULL AND (SELECT count(*) FROM maps WHERE site_id = p_site) = 1 THEN
        n.map_id := (SELECT id FROM maps WHERE site_id = p_site);
    END IF;
    FOREACH k IN ARRAY ARRAY['stage', 'touchpoint', 'persona'] LOOP
        IF (v ? k OR v ? (k || '_id')) AND n.map_id IS NULL
           AND jsonb_typeof(coalesce(v -> k, v -> (k || '_id'))) <> 'null' THEN
            PERFORM jd__fail(400, 'missing_field', 'name the map (field "map") the rule''s stage, touchpoint or persona belong to',
                             p_prefix || 'map');
        END IF;
    END LOOP;
    IF v ? 'stage' OR v ? 'stage_id' THEN
        n.stage_id := jd__resolve('stages', n.map_id, coalesce(v -> 'stage', v -> 'stage_id'), 'stage', p_prefix || 'stage');
    END IF;
    IF v ? 'touchpoint' OR v ? 'touchpoint_id' THEN
        n.touchpoint_id := jd__resolve('touchpoints', n.map_id, coalesce(v -> 'touchpoint', v -> 'touchpoint_id'),
                                       'touchpoint', p_prefix || 'touchpoint');
    END IF;
    IF v ? 'persona' OR v ? 'persona_id' THEN
        n.persona_id := jd__resolve('personas', n.map_id, coalesce(v -> 'persona', v -> 'persona_id'), 'persona',
                                    p_prefix || 'persona');
    END IF;
    -- A map change must still hold the references (a persona from another map is refused).
    IF n.map_id IS NOT NULL THEN
        IF n.stage_id IS NOT NULL AND (SELECT map_id FROM stages WHERE id = n.stage_id) <> n.map_id THEN
            PERFORM jd__fail(400, 'wrong_map', 'the stage belongs to another map', p_prefix || 'stage');
        END IF;
        IF n.touchpoint_id IS NOT NULL AND (SELECT map_id FROM touchpoints WHERE id = n.touchpoint_id) <> n.map_id THEN
            PERFORM jd__fail(400, 'wrong_map', 'the touchpoint belongs to another map', p_prefix || 'touchpoint');
        END IF;
        IF n.persona_id IS NOT NULL AND (SELECT map_id FROM personas WHERE id = n.persona_id) <> n.map_id THEN
            PERFORM jd__fail(400, 'wrong_map', 'the persona belongs to another map', p_prefix || 'persona');
        END IF;
    END IF;
    PERFORM jd__check_allowed(n.stage_id, n.touchpoint_id, p_prefix || 'touchpoint');
    CASE n.kind
    WHEN 'url', 'referrer' THEN
        IF jsonb_typeof(n.match -> 'pattern') IS DISTINCT FROM 'string' OR n.match ->> 'pattern' = '' THEN
            PERFORM jd__fail(400, 'missing_field', 'match.pattern is required', p_prefix || 'match.pattern');
        END IF;
        IF NOT coalesce(n.match ->> 'op', 'contains') IN ('exact', 'contains', 'not_contains', 'starts_with', 'ends_with', 'regex') THEN
            PERFORM jd__fail(400, 'invalid_value', 'match.op must be exact, contains, not_contains, starts_with, ends_with or regex',
                             p_prefix || 'match.op');
        END IF;
        IF n.match ->> 'op' = 'regex' THEN
            PERFORM jd__check_regex(n.match ->> 'pattern', p_prefix || 'match.pattern');
        END IF;
        IF n.kind = 'url' AND n.stage_id IS NULL AND n.touchpoint_id IS NULL THEN
            PERFORM jd__fail(400, 'missing_field', 'a url rule sets a stage, a touchpoint or both', p_prefix || 'stage');
        ELSIF n.kind = 'referrer' AND n.touchpoint_id IS NULL THEN
            PERFORM jd__fail(400, 'missing_field', 'a referrer rule sets a touchpoint', p_prefix || 'touchpoint');
        END IF;
    WHEN 'utm' THEN
        IF n.match = '{}' OR EXISTS (SELECT 1 FROM jsonb_each(n.match) e
                                      WHERE NOT e.key IN ('source', 'medium', 'campaign', 'term', 'content')
                                         OR jsonb_typeof(e.value) <> 'string') THEN
            PERFORM jd__fail(400, 'invalid_value', 'match holds one or more of source, medium, campaign, term, content (strings)',
                             p_prefix || 'match');
        END IF;
        IF n.touchpoint_id IS NULL THEN
            PERFORM jd__fail(400, 'missing_field', 'a utm rule sets a touchpoint', p_prefix || 'touchpoint');
        END IF;
    WHEN 'persona_attribute' THEN
        IF jsonb_typeof(n.match -> 'attribute') IS DISTINCT FROM 'string' OR NOT n.match ? 'value' THEN
            PERFORM jd__fail(400, 'missing_field', 'match needs "attribute" and "value"', p_prefix || 'match.attribute');
        END IF;
        IF n.persona_id IS NULL THEN
            PERFORM jd__fail(400, 'missing_field', 'a persona rule assigns a persona', p_prefix || 'persona');
        END IF;
    WHEN 'screener' THEN
        SELECT s.id INTO sv_id FROM surveys s
         WHERE s.map_id = n.map_id AND (s.slug = n.match ->> 'survey' OR s.id::text = n.match ->> 'survey');
        IF sv_id IS NULL THEN
            PERFORM jd__fail(400, 'unknown_survey', 'match.survey is not a survey of the rule''s map', p_prefix || 'match.survey');
        END IF;
        n.match := jd__norm_show_if(n.match - 'survey', p_prefix || 'match') || jsonb_build_object('survey', n.match -> 'survey');
        IF NOT EXISTS (SELECT 1 FROM questions q WHERE q.survey_id = sv_id AND q.key = n.match ->> 'question'
                          AND q.retired_at IS NULL) THEN
            PERFORM jd__fail(400, 'unknown_question', format('no question "%s" in that survey', n.match ->> 'question'),
                             p_prefix || 'match.question');
        END IF;
        IF n.persona_id IS NULL THEN
            PERFORM jd__fail(400, 'missing_field', 'a screener rule assigns a persona', p_prefix || 'persona');
        END IF;
    END CASE;
    IF p_id IS NULL THEN
        INSERT INTO tagging_rules (site_id, map_id, kind, match, stage_id, touchpoint_id, persona_id, position)
        VALUES (n.site_id, n.map_id, n.kind, n.match, n.stage_id, n.touchpoint_id, n.persona_id, n.position)
        RETURNING id INTO n.id;
    ELSE
        UPDATE tagging_rules SET map_id = n.map_id, kind = n.kind, match = n.match, stage_id = n.stage_id,
               touchpoint_id = n.touchpoint_id, persona_id = n.persona_id, position = n.position
         WHERE id = p_id;
    END IF;
    RETURN n.id;
END $$;

-- ===========================================================================================
-- 4. Route handlers: f(ctx, method, params (path captures), query, body) -> jd_api_resp
-- ===========================================================================================

-- The site of an object, after 404 (unknown id) and 403 (another site's object) checks.
CREATE FUNCTION jd__site_of(p_ctx jd_api_ctx, p_type text, p_id text)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    i bigint := jd__id(p_id);
    s bigint;
BEGIN
    s := CASE p_type
        WHEN 'site' THEN (SELECT id FROM sites WHERE id = i)
        WHEN 'map' THEN (SELECT site_id FROM maps WHERE id = i)
        WHEN 'stage' THEN (SELECT m.site_id FROM stages x JOIN maps m ON m.id = x.map_id WHERE x.id = i)
        WHEN 'survey' THEN (SELECT m.site_id FROM surveys x JOIN maps m ON m.id = x.map_id WHERE x.id = i)
        WHEN 'rule' THEN (SELECT site_id FROM tagging_rules WHERE id = i)
        END;
    IF s IS NULL THEN
        PERFORM jd__fail(404, 'not_found', format('no %s with id %s', p_type, p_id));
    END IF;
    PERFORM jd__site_check(p_ctx, s);
    RETURN s;
END $$;

-- Is this object still referenced by stored evidence? (deleting it needs ?force=true)
CREATE FUNCTION jd__evidence_count(p_type text, p_id bigint)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT CASE p_type
        WHEN 'site' THEN (SELECT count(*) FROM answers WHERE site_id = p_id)
        WHEN 'map' THEN (SELECT count(*) FROM answers WHERE map_id = p_id)
        WHEN 'persona' THEN (SELECT count(*) FROM answers WHERE persona_id = p_id)
        WHEN 'stage' THEN (SELECT count(*) FROM answers WHERE stage_id = p_id)
        WHEN 'touchpoint' THEN (SELECT count(*) FROM answers WHERE touchpoint_id = p_id)
        WHEN 'obstacle' THEN (SELECT count(*) FROM answers a JOIN obstacles o ON o.map_id = a.map_id
                                WHERE o.id = p_id AND p_id = ANY (a.obstacle_ids))
        WHEN 'survey' THEN (SELECT count(*) FROM answers WHERE survey_id = p_id)
        ELSE 0 END
$$;

CREATE FUNCTION jd__delete_guard(p_query jsonb, p_type text, p_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n bigint := jd__evidence_count(p_type, p_id);
BEGIN
    IF n > 0 AND NOT jd__qbool(p_query, 'force') THEN
        PERFORM jd__fail(409, 'has_evidence',
            format('%s answers refer to this %s; archive it instead, or delete with ?force=true', n, p_type));
    END IF;
END $$;

-- Lists rows of p_table matching p_where ($1 = p_arg) as p_json(x), ordered, paginated.
CREATE FUNCTION jd__list_rows(p_table regclass, p_where text, p_arg bigint, p_order text, p_json text,
                              p_query jsonb)
RETURNS jd_api_resp LANGUAGE plpgsql STABLE AS $$
DECLARE
    pg record;
    items jsonb;
    total bigint;
BEGIN
    pg := jd__page(p_query);
    EXECUTE format('SELECT (SELECT coalesce(jsonb_agg(%s ORDER BY %s), ''[]'') FROM
                              (SELECT * FROM %s x WHERE %s ORDER BY %s LIMIT $2 OFFSET $3) x),
                           (SELECT count(*) FROM %s x WHERE %s)',
                   p_json, p_order, p_table, p_where, p_order, p_table, p_where)
       INTO items, total USING p_arg, pg.lim, pg.off;
    RETURN jd__list(items, total, pg.lim, pg.off);
END $$;

-- /maps/{id}/<children>[/{cid}] for personas, stages, touchpoints, obstacles and surveys.
CREATE FUNCTION jd__map_children(p_ctx jd_api_ctx, p_method text, p text[], p_query jsonb, p_body text,
                                 p_table regclass, p_type text, p_order text, p_json text, p_put text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    site bigint := jd__site_of(p_ctx, 'map', p[1]);
    mid bigint := p[1]::bigint;
    cid bigint;
    b jsonb;
    obj jsonb;
BEGIN
    IF p[2] IS NULL THEN
        IF p_method = 'GET' THEN
            RETURN jd__list_rows(p_table, 'x.map_id = $1', mid, p_order, p_json, p_query);
        END IF;
        b := jd__body_object(p_body);
        EXECUTE format('SELECT %I($1, NULL, $2)', p_put) INTO cid USING mid, b;
        EXECUTE format('SELECT %s FROM %s x WHERE x.id = $1', p_json, p_table) INTO obj USING cid;
        PERFORM jd__audit(p_ctx, 'create', p_type, cid::text, site, b);
        RETURN jd__ok(obj, 201);
    END IF;
    cid := jd__id(p[2]);
    EXECUTE format('SELECT %s FROM %s x WHERE x.id = $1 AND x.map_id = $2', p_json, p_table)
       INTO obj USING cid, mid;
    IF obj IS NULL THEN
        RETURN jd__error(404, 'not_found', format('no %s with id %s in map %s', p_type, p[2], p[1]));
    END IF;
    IF p_method = 'GET' THEN
        RETURN jd__ok(obj);
    ELSIF p_method = 'PATCH' THEN
        b := jd__body_object(p_body);
        EXECUTE format('SELECT %I($1, $2, $3)', p_put) USING mid, cid, b;
        EXECUTE format('SELECT %s FROM %s x WHERE x.id = $1', p_json, p_table) INTO obj USING cid;
        PERFORM jd__audit(p_ctx, 'update', p_type, cid::text, site, b);
        RETURN jd__ok(obj);
    END IF;
    -- DELETE
    PERFORM jd__delete_guard(p_query, p_type, cid);
    EXECUTE format('DELETE FROM %s WHERE id = $1', p_table) USING cid;
    IF p_type = 'stage' THEN
        UPDATE stages s SET position = o.rn
          FROM (SELECT id, row_number() OVER (ORDER BY position, id) AS rn FROM stages WHERE stages.map_id = mid) o
         WHERE s.id = o.id AND s.position <> o.rn;
    END IF;
    PERFORM jd__audit(p_ctx, 'delete', p_type, cid::text, site, obj);
    RETURN jd__ok(jsonb_build_object('deleted', true, 'id', cid));
END $$;

CREATE FUNCTION jd__h_personas(c jd_api_ctx, m text, p text[], q jsonb, b text) RETURNS jd_api_resp
LANGUAGE sql AS $$ SELECT jd__map_children(c, m, p, q, b, 'personas', 'persona', 'x.position, x.id', 'to_jsonb(x)', 'jd__put_persona') $$;
CREATE FUNCTION jd__h_stages(c jd_api_ctx, m text, p text[], q jsonb, b text) RETURNS jd_api_resp
LANGUAGE sql AS $$ SELECT jd__map_children(c, m, p, q, b, 'stages', 'stage', 'x.position, x.id', 'to_jsonb(x)', 'jd__put_stage') $$;
CREATE FUNCTION jd__h_touchpoints(c jd_api_ctx, m text, p text[], q jsonb, b text) RETURNS jd_api_resp
LANGUAGE sql AS $$ SELECT jd__map_children(c, m, p, q, b, 'touchpoints', 'touchpoint', 'x.position, x.id', 'jd__touchpoint_json(x.id)', 'jd__put_touchpoint') $$;
CREATE FUNCTION jd__h_obstacles(c jd_api_ctx, m text, p text[], q jsonb, b text) RETURNS jd_api_resp
LANGUAGE sql AS $$ SELECT jd__map_children(c, m, p, q, b, 'obstacles', 'obstacle', 'x.position, x.id', 'to_jsonb(x)', 'jd__put_obstacle') $$;
CREATE FUNCTION jd__h_surveys(c jd_api_ctx, m text, p text[], q jsonb, b text) RETURNS jd_api_resp
LANGUAGE sql AS $$ SELECT jd__map_children(c, m, p, q, b, 'surveys', 'survey', 'x.id', 'to_jsonb(x)', 'jd__put_survey') $$;

-- /sites and /sites/{id}
CREATE FUNCTION jd__h_sites(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    sid bigint;
    body jsonb;
    obj jsonb;
BEGIN
    IF p[1] IS NULL THEN
        IF m = 'GET' THEN
            RETURN jd__list_rows('sites', '$1::bigint IS NULL OR x.id = $1', c.site_id, 'x.id', 'jd__site_json(x.id)', q);
        END IF;
        IF c.site_id IS NOT NULL THEN
            PERFORM jd__fail(403, 'forbidden', 'a token restricted to one site cannot create sites');
        END IF;
        body := jd__body_object(b);
        sid := jd__put_site(NULL, body);
        PERFORM jd__audit(c, 'create', 'site', sid::text, sid, body);
        RETURN jd__ok(jd__site_json(sid), 201);
    END IF;
    sid := jd__site_of(c, 'site', p[1]);
    IF m = 'GET' THEN
        RETURN jd__ok(jd__site_json(sid));
    ELSIF m = 'PATCH' THEN
        body := jd__body_object(b);
        PERFORM jd__put_site(sid, body);
        PERFORM jd__audit(c, 'update', 'site', sid::text, sid, body);
        RETURN jd__ok(jd__site_json(sid));
    END IF;
    IF c.site_id IS NOT NULL THEN
        PERFORM jd__fail(403, 'forbidden', 'a token restricted to one site cannot delete it');
    END IF;
    PERFORM jd__delete_guard(q, 'site', sid);
    obj := jd__site_json(sid);
    DELETE FROM sites WHERE id = sid;
    PERFORM jd__audit(c, 'delete', 'site', sid::text, sid, obj);
    RETURN jd__ok(jsonb_build_object('deleted', true, 'id', sid));
END $$;

-- The site a request names (?site= or "site" in a body: id or key); NULL when not named.
CREATE FUNCTION jd__site_ref(c jd_api_ctx, p_ref text, p_field text)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    sid bigint;
BEGIN
    IF p_ref IS NULL OR p_ref = '' THEN
        RETURN NULL;
    END IF;
    SELECT id INTO sid FROM sites WHERE id = jd__id(p_ref) OR key = p_ref ORDER BY id = jd__id(p_ref) DESC LIMIT 1;
    IF sid IS NULL THEN
        PERFORM jd__fail(400, 'unknown_site', format('no site "%s"', p_ref), p_field);
    END IF;
    PERFORM jd__site_check(c, sid);
    RETURN sid;
END $$;

-- /maps and /maps/{id}. POST accepts optional stages, touchpoints, personas and obstacles arrays;
-- without stages (touchpoints) the defaults are created.
CREATE FUNCTION jd__h_maps(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    sid bigint;
    mid bigint;
    body jsonb;
    e jsonb;
    i int;
    k text;
    obj jsonb;
BEGIN
    IF p[1] IS NULL THEN
        IF m = 'GET' THEN
            sid := coalesce(jd__site_ref(c, q ->> 'site', 'site'), c.site_id);
            RETURN jd__list_rows('maps', '$1::bigint IS NULL OR x.site_id = $1', sid, 'x.id', 'jd__map_json(x.id)', q);
        END IF;
        body := jd__body_object(b);
        IF jsonb_typeof(body -> 'site') NOT IN ('string', 'number') AND body ? 'site' THEN
            PERFORM jd__fail(400, 'invalid_type', 'site must be a site id or key', 'site');
        END IF;
        sid := coalesce(jd__site_ref(c, body ->> 'site', 'site'), jd__site_ref(c, q ->> 'site', 'site'), c.site_id);
        IF sid IS NULL THEN
            PERFORM jd__fail(400, 'missing_field', 'name the site of the map ("site": id or key)', 'site');
        END IF;
        FOREACH k IN ARRAY ARRAY['stages', 'touchpoints', 'personas', 'obstacles'] LOOP
            IF body ? k AND jsonb_typeof(body -> k) <> 'array' THEN
                PERFORM jd__fail(400, 'invalid_type', format('%s must be an array', k), k);
            END IF;
        END LOOP;
        mid := jd__put_map(sid, NULL, body - 'site' - 'stages' - 'touchpoints' - 'personas' - 'obstacles');
        i := 0;
        FOR e IN SELECT * FROM jsonb_array_elements(coalesce(body -> 'stages', '[]')) LOOP
            IF jsonb_typeof(e) <> 'object' THEN
                PERFORM jd__fail(400, 'invalid_type', 'a stage is an object', format('stages[%s]', i));
            END IF;
            PERFORM jd__put_stage(mid, NULL, e, format('stages[%s].', i));
            i := i + 1;
        END LOOP;
        PERFORM jd__map_defaults(mid, NOT body ? 'stages', false);
        i := 0;
        FOR e IN SELECT * FROM jsonb_array_elements(coalesce(body -> 'touchpoints', '[]')) LOOP
            IF jsonb_typeof(e) <> 'object' THEN
                PERFORM jd__fail(400, 'invalid_type', 'a touchpoint is an object', format('touchpoints[%s]', i));
            END IF;
            PERFORM jd__put_touchpoint(mid, NULL, e, format('touchpoints[%s].', i));
            i := i + 1;
        END LOOP;
        PERFORM jd__map_defaults(mid, false, NOT body ? 'touchpoints');
        i := 0;
        FOR e IN SELECT * FROM jsonb_array_elements(coalesce(body -> 'personas', '[]')) LOOP
            IF jsonb_typeof(e) <> 'object' THEN
                PERFORM jd__fail(400, 'invalid_type', 'a persona is an object', format('personas[%s]', i));
            END IF;
            PERFORM jd__put_persona(mid, NULL, e, format('personas[%s].', i));
            i := i + 1;
        END LOOP;
        i := 0;
        FOR e IN SELECT * FROM jsonb_array_elements(coalesce(body -> 'obstacles', '[]')) LOOP
            IF jsonb_typeof(e) <> 'object' THEN
                PERFORM jd__fail(400, 'invalid_type', 'an obstacle is an object', format('obstacles[%s]', i));
            END IF;
            PERFORM jd__put_obstacle(mid, NULL, e, format('obstacles[%s].', i));
            i := i + 1;
        END LOOP;
        PERFORM jd__audit(c, 'create', 'map', mid::text, sid, body);
        RETURN jd__ok(jd__map_json(mid), 201);
    END IF;
    sid := jd__site_of(c, 'map', p[1]);
    mid := p[1]::bigint;
    IF m = 'GET' THEN
        RETURN jd__ok(jd__map_json(mid));
    ELSIF m = 'PATCH' THEN
        body := jd__body_object(b);
        PERFORM jd__put_map(sid, mid, body);
        PERFORM jd__audit(c, 'update', 'map', mid::text, sid, body);
        RETURN jd__ok(jd__map_json(mid));
    END IF;
    PERFORM jd__delete_guard(q, 'map', mid);
    obj := jd__map_json(mid);
    DELETE FROM maps WHERE id = mid;
    PERFORM jd__audit(c, 'delete', 'map', mid::text, sid, obj);
    RETURN jd__ok(jsonb_build_object('deleted', true, 'id', mid));
END $$;

-- /stages/{id}/resources[/{rid}]
CREATE FUNCTION jd__h_resources(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    site bigint := jd__site_of(c, 'stage', p[1]);
    st bigint := p[1]::bigint;
    rid bigint;
    body jsonb;
    obj jsonb;
BEGIN
    IF p[2] IS NULL THEN
        IF m = 'GET' THEN
            RETURN jd__list_rows('stage_resources', 'x.stage_id = $1', st, 'x.position, x.id', 'to_jsonb(x)', q);
        END IF;
        body := jd__body_object(b);
        rid := jd__put_resource(st, NULL, body);
        PERFORM jd__audit(c, 'create', 'resource', rid::text, site, body);
        RETURN jd__ok((SELECT to_jsonb(x) FROM stage_resources x WHERE id = rid), 201);
    END IF;
    rid := jd__id(p[2]);
    SELECT to_jsonb(x) INTO obj FROM stage_resources x WHERE x.id = rid AND x.stage_id = st;
    IF obj IS NULL THEN
        RETURN jd__error(404, 'not_found', format('no resource with id %s in stage %s', p[2], p[1]));
    END IF;
    IF m = 'GET' THEN
        RETURN jd__ok(obj);
    ELSIF m = 'PATCH' THEN
        body := jd__body_object(b);
        PERFORM jd__put_resource(st, rid, body);
        PERFORM jd__audit(c, 'update', 'resource', rid::text, site, body);
        RETURN jd__ok((SELECT to_jsonb(x) FROM stage_resources x WHERE id = rid));
    END IF;
    DELETE FROM stage_resources WHERE id = rid;
    PERFORM jd__audit(c, 'delete', 'resource', rid::text, site, obj);
    RETURN jd__ok(jsonb_build_object('deleted', true, 'id', rid));
END $$;

-- /surveys/{id}/questions[/{qid}]. Lists show live versions (?include_retired=true: all).
CREATE FUNCTION jd__h_questions(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    site bigint := jd__site_of(c, 'survey', p[1]);
    sv bigint := p[1]::bigint;
    qid bigint;
    new_id bigint;
    body jsonb;
    obj jsonb;
    old questions;
BEGIN
    IF p[2] IS NULL THEN
        IF m = 'GET' THEN
            RETURN jd__list_rows('questions',
                CASE WHEN jd__qbool(q, 'include_retired') THEN 'x.survey_id = $1'
                     ELSE 'x.survey_id = $1 AND x.retired_at IS NULL' END,
                sv, 'x.position, x.key, x.version', 'jd__question_json(x.id)', q);
        END IF;
        body := jd__body_object(b);
        qid := jd__put_question(sv, NULL, body);
        PERFORM jd__audit(c, 'create', 'question', qid::text, site, body);
        RETURN jd__ok(jd__question_json(qid), 201);
    END IF;
    qid := jd__id(p[2]);
    SELECT * INTO old FROM questions x WHERE x.id = qid AND x.survey_id = sv;
    IF NOT FOUND THEN
        RETURN jd__error(404, 'not_found', format('no question with id %s in survey %s', p[2], p[1]));
    END IF;
    IF m = 'GET' THEN
        RETURN jd__ok(jd__question_json(qid));
    ELSIF m = 'PATCH' THEN
        body := jd__body_object(b);
        new_id := jd__put_question(sv, qid, body);
        PERFORM jd__audit(c, CASE WHEN new_id <> qid THEN 'version' ELSE 'update' END, 'question', new_id::text, site,
                          body || jsonb_build_object('previous_id', CASE WHEN new_id <> qid THEN qid END));
        RETURN jd__ok(jd__question_json(new_id)
                      || CASE WHEN new_id <> qid THEN jsonb_build_object('previous_id', qid, 'versioned', true)
                              ELSE jsonb_build_object('versioned', false) END);
    END IF;
    -- DELETE: an answered question is retired (its answers keep it), an unanswered one removed.
    IF old.retired_at IS NULL THEN
        IF EXISTS (SELECT 1 FROM questions x WHERE x.survey_id = sv AND x.retired_at IS NULL AND x.id <> qid
                      AND x.show_if ->> 'question' = old.key) THEN
            PERFORM jd__fail(409, 'in_use', format('another question shows only if "%s" matches; change it first', old.key));
        END IF;
        IF (SELECT status FROM surveys WHERE id = sv) = 'live'
           AND NOT EXISTS (SELECT 1 FROM questions x WHERE x.survey_id = sv AND x.retired_at IS NULL AND x.id <> qid) THEN
            PERFORM jd__fail(409, 'survey_live', 'this is the last question of a live survey; archive the survey first');
        END IF;
    END IF;
    obj := jd__question_json(qid);
    IF EXISTS (SELECT 1 FROM answers a WHERE a.question_id = qid) THEN
        UPDATE questions SET retired_at = coalesce(retired_at, now()) WHERE id = qid;
        PERFORM jd__audit(c, 'retire', 'question', qid::text, site, obj);
        RETURN jd__ok(jsonb_build_object('deleted', false, 'retired', true, 'id', qid));
    END IF;
    DELETE FROM questions WHERE id = qid;
    PERFORM jd__audit(c, 'delete', 'question', qid::text, site, obj);
    RETURN jd__ok(jsonb_build_object('deleted', true, 'id', qid));
END $$;

-- /sites/{id}/rules[/{rid}]
CREATE FUNCTION jd__h_rules(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    site bigint := jd__site_of(c, 'site', p[1]);
    rid bigint;
    body jsonb;
    obj jsonb;
BEGIN
    IF p[2] IS NULL THEN
        IF m = 'GET' THEN
            RETURN jd__list_rows('tagging_rules', 'x.site_id = $1', site, 'x.position, x.id', 'jd__rule_json(x.id)', q);
        END IF;
        body := jd__body_object(b);
        rid := jd__put_rule(site, NULL, body);
        PERFORM jd__audit(c, 'create', 'rule', rid::text, site, body);
        RETURN jd__ok(jd__rule_json(rid), 201);
    END IF;
    rid := jd__id(p[2]);
    IF NOT EXISTS (SELECT 1 FROM tagging_rules x WHERE x.id = rid AND x.site_id = site) THEN
        RETURN jd__error(404, 'not_found', format('no rule with id %s in site %s', p[2], p[1]));
    END IF;
    IF m = 'GET' THEN
        RETURN jd__ok(jd__rule_json(rid));
    ELSIF m = 'PATCH' THEN
        body := jd__body_object(b);
        PERFORM jd__put_rule(site, rid, body);
        PERFORM jd__audit(c, 'update', 'rule', rid::text, site, body);
        RETURN jd__ok(jd__rule_json(rid));
    END IF;
    obj := jd__rule_json(rid);
    DELETE FROM tagging_rules WHERE id = rid;
    PERFORM jd__audit(c, 'delete', 'rule', rid::text, site, obj);
    RETURN jd__ok(jsonb_build_object('deleted', true, 'id', rid));
END $$;

-- /interview-guide: the built-in template.
CREATE FUNCTION jd__h_guide(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE sql STABLE AS $$
    SELECT jd__list((SELECT jsonb_agg(to_jsonb(g) ORDER BY g.position) FROM jd_interview_guide() g), 6, 6, 0)
$$;

-- POST /surveys/{id}/interview-guide: copies the guide's questions into the survey (optional body
-- {"stage": ..., "touchpoint": ..., "keys": [...]} to tie them to a cell or copy a subset).
CREATE FUNCTION jd__h_guide_copy(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    site bigint := jd__site_of(c, 'survey', p[1]);
    sv bigint := p[1]::bigint;
    body jsonb := jd__check(jd__body_object(b, false), '{"stage":"ref?","touchpoint":"ref?","keys":"textarray"}');
    g record;
    ids bigint[] := '{}';
BEGIN
    FOR g IN SELECT * FROM jd_interview_guide() x
              WHERE NOT body ? 'keys' OR x.key IN (SELECT jsonb_array_elements_text(body -> 'keys'))
              ORDER BY x.position LOOP
        ids := ids || jd__put_question(sv, NULL,
            jsonb_build_object('key', g.key, 'prompt', g.prompt, 'lane', g.lane, 'kind', g.kind)
            || (body - 'keys'), format('guide[%s].', g.key));
    END LOOP;
    PERFORM jd__audit(c, 'create', 'question', array_to_string(ids, ','), site,
                      jsonb_build_object('from', 'interview-guide', 'survey', sv));
    RETURN jd__ok(jsonb_build_object('items', (SELECT jsonb_agg(jd__question_json(i) ORDER BY i) FROM unnest(ids) i)), 201);
END $$;

-- /maps/{id}/document: GET dumps the map as code, PUT applies a document to this map.
CREATE FUNCTION jd__h_document(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    site bigint := jd__site_of(c, 'map', p[1]);
    mp maps;
    doc jsonb;
BEGIN
    SELECT * INTO mp FROM maps WHERE id = p[1]::bigint;
    IF m = 'GET' THEN
        RETURN jd__ok(jd_map_document(mp.id));
    END IF;
    doc := jd__body_object(b);
    IF doc ? 'slug' AND doc ->> 'slug' IS DISTINCT FROM mp.slug THEN
        PERFORM jd__fail(409, 'slug_mismatch', format('the document is for map "%s", this is map "%s"', doc ->> 'slug', mp.slug), 'slug');
    END IF;
    IF doc ? 'site' AND doc ->> 'site' IS DISTINCT FROM (SELECT key FROM sites WHERE id = site) THEN
        PERFORM jd__fail(409, 'site_mismatch', 'the document is for another site', 'site');
    END IF;
    doc := doc || jsonb_build_object('site', (SELECT key FROM sites WHERE id = site), 'slug', mp.slug);
    RETURN jd__ok(jd_apply_map(doc, c.actor));
END $$;

-- POST /maps/{id}/import: a JSON array of findings, or {"rows": [...], "atomic": bool}
-- (?atomic=true also works). 200 with the summary; 400 when atomic and a row is bad.
CREATE FUNCTION jd__h_import(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    site bigint := jd__site_of(c, 'map', p[1]);
    j jsonb := jd__body_json(b);
    rows jsonb;
    atomic boolean := jd__qbool(q, 'atomic');
    res jsonb;
BEGIN
    IF jsonb_typeof(j) = 'array' THEN
        rows := j;
    ELSIF jsonb_typeof(j) = 'object' AND jsonb_typeof(j -> 'rows') = 'array' THEN
        rows := j -> 'rows';
        IF jsonb_typeof(j -> 'atomic') = 'boolean' THEN
            atomic := atomic OR (j ->> 'atomic')::boolean;
        END IF;
    ELSE
        PERFORM jd__fail(400, 'bad_body', 'the body is a JSON array of findings or {"rows": [...], "atomic": true|false}', 'rows');
    END IF;
    res := jd_import_findings(p[1]::bigint, rows, atomic, c.actor);
    IF atomic AND (res ->> 'rejected')::int > 0 THEN
        RETURN jd__ok(jsonb_build_object('error', jsonb_build_object(
            'code', 'rejected_rows', 'field', 'rows',
            'message', format('%s of %s rows are invalid; nothing was stored (atomic)', res ->> 'rejected',
                              jsonb_array_length(rows)))) || res, 400);
    END IF;
    RETURN jd__ok(res);
END $$;

-- Creates a token; the raw token is returned here once and never stored (only its sha256).
CREATE FUNCTION jd__token_new(c jd_api_ctx, p_name text, p_scope text, p_site bigint, p_expires timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    raw text := 'jd_' || jd__base64url(jd__random_bytes(32));
    tid bigint;
BEGIN
    IF p_name IS NULL OR p_name = '' THEN
        PERFORM jd__fail(400, 'missing_field', 'a token needs a name', 'name');
    END IF;
    IF NOT coalesce(p_scope, '') IN ('read', 'admin') THEN
        PERFORM jd__fail(400, 'invalid_value', 'scope must be read or admin', 'scope');
    END IF;
    IF p_expires IS NOT NULL AND p_expires <= now() THEN
        PERFORM jd__fail(400, 'invalid_value', 'the expiry lies in the past', 'expires_at');
    END IF;
    INSERT INTO admin_tokens (site_id, name, token_hash, scope, expires_at)
    VALUES (p_site, p_name, jd__token_hash(raw), p_scope, p_expires)
    RETURNING id INTO tid;
    PERFORM jd__audit(c, 'create', 'token', tid::text, p_site,
                      jsonb_build_object('name', p_name, 'scope', p_scope, 'site_id', p_site, 'expires_at', p_expires));
    RETURN jd__token_json(tid) || jsonb_build_object('token', raw);
END $$;

CREATE FUNCTION jd__token_revoke(c jd_api_ctx, p_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    t admin_tokens;
BEGIN
    SELECT * INTO t FROM admin_tokens WHERE id = p_id;
    IF NOT FOUND THEN
        PERFORM jd__fail(404, 'not_found', format('no token with id %s', p_id));
    END IF;
    PERFORM jd__site_check(c, t.site_id);
    UPDATE admin_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = p_id;
    PERFORM jd__audit(c, 'revoke', 'token', p_id::text, t.site_id, jsonb_build_object('name', t.name));
    RETURN jd__token_json(p_id);
END $$;

-- /tokens[/{id}] (admin scope only). POST {"name", "scope": "read"|"admin", "site": id|key|null,
-- "expires_days": n | "expires_at": timestamp} returns the raw token once. DELETE revokes.
CREATE FUNCTION jd__h_tokens(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    body jsonb;
    sid bigint;
    tid bigint;
    exp timestamptz;
    obj jsonb;
BEGIN
    PERFORM jd__need_admin(c);
    IF p[1] IS NULL THEN
        IF m = 'GET' THEN
            RETURN jd__list_rows('admin_tokens', '$1::bigint IS NULL OR x.site_id = $1', c.site_id, 'x.id',
                                 'jd__token_json(x.id)', q);
        END IF;
        body := jd__check(jd__body_object(b), '{"name":"text","scope":"text","site":"ref?","expires_days":"int?",
                                                  "expires_at":"text?"}');
        IF body ? 'site' AND jsonb_typeof(body -> 'site') <> 'null' THEN
            sid := jd__site_ref(c, body ->> 'site', 'site');
        ELSIF c.site_id IS NOT NULL THEN
            sid := c.site_id;
        END IF;
        IF (body ->> 'expires_days')::int < 1 THEN
            PERFORM jd__fail(400, 'invalid_value', 'expires_days must be at least 1', 'expires_days');
        END IF;
        exp := coalesce((body ->> 'expires_at')::timestamptz, now() + make_interval(days => (body ->> 'expires_days')::int));
        RETURN jd__ok(jd__token_new(c, jd__need(body, 'name'), coalesce(body ->> 'scope', 'read'), sid, exp), 201);
    END IF;
    tid := jd__id(p[1]);
    obj := jd__token_json(tid);
    IF obj IS NULL THEN
        RETURN jd__error(404, 'not_found', format('no token with id %s', p[1]));
    END IF;
    PERFORM jd__site_check(c, (obj ->> 'site_id')::bigint);
    IF m = 'GET' THEN
        RETURN jd__ok(obj);
    END IF;
    RETURN jd__ok(jd__token_revoke(c, tid));
END $$;

-- /audit (?object_type= &object_id= &actor= &action=), newest first.
CREATE FUNCTION jd__h_audit(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql STABLE AS $$
DECLARE
    pg record;
    items jsonb;
    total bigint;
BEGIN
    pg := jd__page(q);
    WITH f AS (
        SELECT * FROM audit_log a
         WHERE (c.site_id IS NULL OR a.site_id = c.site_id)
           AND (q ->> 'object_type' IS NULL OR a.object_type = q ->> 'object_type')
           AND (q ->> 'object_id' IS NULL OR a.object_id = q ->> 'object_id')
           AND (q ->> 'actor' IS NULL OR a.actor = q ->> 'actor')
           AND (q ->> 'action' IS NULL OR a.action = q ->> 'action'))
    SELECT (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.id DESC), '[]')
              FROM (SELECT * FROM f ORDER BY id DESC LIMIT pg.lim OFFSET pg.off) x),
           (SELECT count(*) FROM f)
      INTO items, total;
    RETURN jd__list(items, total, pg.lim, pg.off);
END $$;

-- ===========================================================================================
-- 5. Routing, jd_admin, jd_api
-- ===========================================================================================

-- Every route the API serves (migration 011 adds the privacy routes). {name} matches one path
-- segment, passed to the handler as params[n]. tests/integration/api.test.mjs checks that each
-- row is documented in proto/openapi.yaml.
CREATE TABLE api_routes (
    template text PRIMARY KEY,
    methods  text[] NOT NULL,
    handler  text NOT NULL,
    pattern  text GENERATED ALWAYS AS ('^' || regexp_replace(template, '\{[a-z_]+\}', '([^/]+)', 'g') || '$') STORED
);
INSERT INTO api_routes (template, methods, handler) VALUES
    ('/sites',                                '{GET,POST}',         'jd__h_sites'),
    ('/sites/{id}',                           '{GET,PATCH,DELETE}', 'jd__h_sites'),
    ('/sites/{id}/rules',                     '{GET,POST}',         'jd__h_rules'),
    ('/sites/{id}/rules/{rid}',               '{GET,PATCH,DELETE}', 'jd__h_rules'),
    ('/maps',                                 '{GET,POST}',         'jd__h_maps'),
    ('/maps/{id}',                            '{GET,PATCH,DELETE}', 'jd__h_maps'),
    ('/maps/{id}/personas',                   '{GET,POST}',         'jd__h_personas'),
    ('/maps/{id}/personas/{pid}',             '{GET,PATCH,DELETE}', 'jd__h_personas'),
    ('/maps/{id}/stages',                     '{GET,POST}',         'jd__h_stages'),
    ('/maps/{id}/stages/{sid}',               '{GET,PATCH,DELETE}', 'jd__h_stages'),
    ('/maps/{id}/touchpoints',                '{GET,POST}',         'jd__h_touchpoints'),
    ('/maps/{id}/touchpoints/{tid}',          '{GET,PATCH,DELETE}', 'jd__h_touchpoints'),
    ('/maps/{id}/obstacles',                  '{GET,POST}',         'jd__h_obstacles'),
    ('/maps/{id}/obstacles/{oid}',            '{GET,PATCH,DELETE}', 'jd__h_obstacles'),
    ('/maps/{id}/surveys',                    '{GET,POST}',         'jd__h_surveys'),
    ('/maps/{id}/surveys/{svid}',             '{GET,PATCH,DELETE}', 'jd__h_surveys'),
    ('/maps/{id}/document',                   '{GET,PUT}',          'jd__h_document'),
    ('/maps/{id}/import',                     '{POST}',             'jd__h_import'),
    ('/stages/{id}/resources',                '{GET,POST}',         'jd__h_resources'),
    ('/stages/{id}/resources/{rid}',          '{GET,PATCH,DELETE}', 'jd__h_resources'),
    ('/surveys/{id}/questions',               '{GET,POST}',         'jd__h_questions'),
    ('/surveys/{id}/questions/{qid}',         '{GET,PATCH,DELETE}', 'jd__h_questions'),
    ('/surveys/{id}/interview-guide',         '{POST}',             'jd__h_guide_copy'),
    ('/interview-guide',                      '{GET}',              'jd__h_guide'),
    ('/tokens',                               '{GET,POST}',         'jd__h_tokens'),
    ('/tokens/{id}',                          '{GET,DELETE}',       'jd__h_tokens'),
    ('/audit',                                '{GET}',              'jd__h_audit');

-- Turns any error raised while handling a request into a response. Client mistakes (SQLSTATE
-- classes 22, 23, 54 and our JDnnn) are 4xx; only a bug in this file gives 500.
CREATE FUNCTION jd__error_response(st text, msg text, det text, hint text, col text, con text, tbl text, p_method text)
RETURNS jd_api_resp LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    field text;
BEGIN
    IF st ~ '^JD[0-9]{3}$' THEN
        RETURN jd__error(substr(st, 3)::int, coalesce(nullif(det, ''), 'error'), msg, hint);
    END IF;
    IF st = '23505' THEN
        field := (regexp_match(coalesce(det, ''), 'Key \(([^)]*)\)'))[1];
        field := btrim(regexp_replace(coalesce(field, ''), '^.*,', ''));
        field := regexp_replace(field, '^lower\((.*)\)$', '\1');
        RETURN jd__error(400, 'duplicate', coalesce(det, msg), nullif(field, ''));
    ELSIF st = '23503' THEN
        IF p_method = 'DELETE' OR det LIKE '%is still referenced%' THEN
            RETURN jd__error(409, 'in_use', 'still in use: ' || coalesce(det, msg));
        END IF;
        RETURN jd__error(400, 'invalid_reference', coalesce(det, msg));
    ELSIF st = '23514' THEN
        field := regexp_replace(regexp_replace(coalesce(con, ''), '^' || coalesce(tbl, '') || '_', ''), '_check$', '');
        RETURN jd__error(400, 'invalid_value', msg, CASE WHEN field IN ('', 'check') THEN NULL ELSE field END);
    ELSIF st = '23502' THEN
        RETURN jd__error(400, 'missing_field', format('field "%s" must not be null', col), col);
    ELSIF st LIKE '23%' OR st LIKE '22%' THEN
        RETURN jd__error(400, 'invalid_value', msg, nullif(col, ''));
    ELSIF st LIKE '54%' THEN
        RETURN jd__error(400, 'too_large', msg);
    ELSIF st IN ('40001', '40P01', '55P03', '57014') THEN
        RETURN jd__error(503, 'retry', 'the database is busy; retry: ' || msg);
    END IF;
    RETURN jd__error(500, 'internal', format('internal error (SQLSTATE %s): %s', st, msg));
END $$;

CREATE FUNCTION jd__dispatch(c jd_api_ctx, p_method text, p_path text, p_query jsonb, p_body text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    path text := '/' || btrim(coalesce(p_path, ''), '/');
    m text := upper(coalesce(p_method, ''));
    q jsonb := CASE WHEN jsonb_typeof(p_query) = 'object' THEN p_query ELSE '{}' END;
    r api_routes;
    params text[];
    resp jd_api_resp;
    st text; msg text; det text; hint text; col text; con text; tbl text;
BEGIN
    IF m = 'HEAD' THEN
        m := 'GET';
    END IF;
    SELECT * INTO r FROM api_routes a WHERE path ~ a.pattern LIMIT 1;
    IF NOT FOUND THEN
        RETURN jd__error(404, 'not_found', format('no such resource: %s', path));
    END IF;
    IF NOT m = ANY (r.methods) THEN
        RETURN jd__error(405, 'method_not_allowed',
                         format('%s is not allowed on %s; allowed: %s', m, r.template, array_to_string(r.methods, ', ')));
    END IF;
    IF m <> 'GET' AND c.scope IS DISTINCT FROM 'admin' THEN
        RETURN jd__error(403, 'forbidden', 'this token has read scope; writes need an admin-scope token');
    END IF;
    params := CASE WHEN position('{' IN r.template) > 0 THEN regexp_match(path, r.pattern) ELSE '{}' END;
    BEGIN
        EXECUTE format('SELECT * FROM %I($1, $2, $3, $4, $5)', r.handler) INTO resp USING c, m, params, q, p_body;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                                hint = PG_EXCEPTION_HINT, col = COLUMN_NAME, con = CONSTRAINT_NAME, tbl = TABLE_NAME;
        resp := jd__error_response(st, msg, det, hint, col, con, tbl, m);
        IF resp.status >= 500 THEN
            RAISE WARNING 'jd_api % %: SQLSTATE % %', m, r.template, st, msg;
        END IF;
    END;
    RETURN resp;
END $$;

-- Full privileges: journeyctl calls this directly (actor 'journeyctl').
CREATE FUNCTION jd_admin(p_method text, p_path text, p_query jsonb, p_body text, p_actor text)
RETURNS TABLE (status int, content_type text, body text) LANGUAGE plpgsql AS $$
DECLARE
    resp jd_api_resp := jd__dispatch(ROW(coalesce(nullif(p_actor, ''), 'journeyctl'), 'admin', NULL, NULL)::jd_api_ctx,
                                     p_method, p_path, p_query, p_body);
BEGIN
    RETURN QUERY SELECT resp.status, 'application/json'::text, resp.body::text;
END $$;

-- The daemon's entry point: authenticates the bearer token (401 when missing, unknown, expired
-- or revoked), records its use, then dispatches with the token's scope and site. The token is
-- looked up by sha256 only (see admin_tokens) and never stored or logged.
CREATE FUNCTION jd_api(p_method text, p_path text, p_query jsonb, p_body text, p_token text)
RETURNS TABLE (status int, content_type text, body text) LANGUAGE plpgsql AS $$
DECLARE
    t admin_tokens;
    resp jd_api_resp;
BEGIN
    IF p_token IS NULL OR p_token = '' THEN
        resp := jd__error(401, 'unauthorized', 'a bearer token is required (Authorization: Bearer <token>)');
    ELSE
        SELECT * INTO t FROM admin_tokens a WHERE a.token_hash = jd__token_hash(p_token);
        IF NOT FOUND THEN
            resp := jd__error(401, 'unauthorized', 'unknown token');
        ELSIF t.revoked_at IS NOT NULL THEN
            resp := jd__error(401, 'unauthorized', 'this token was revoked');
        ELSIF t.expires_at IS NOT NULL AND t.expires_at <= now() THEN
            resp := jd__error(401, 'unauthorized', 'this token has expired');
        ELSE
            UPDATE admin_tokens a SET last_used_at = now() WHERE a.id = t.id;
            resp := jd__dispatch(ROW(t.name, t.scope, t.site_id, t.id)::jd_api_ctx, p_method, p_path, p_query, p_body);
        END IF;
    END IF;
    RETURN QUERY SELECT resp.status, 'application/json'::text, resp.body::text;
END $$;

-- ===========================================================================================
-- 6. Map as code
-- ===========================================================================================

-- The whole map as one document: arrays in display order (positions are implied by order),
-- everything referenced by slug, only live question versions. jd_apply_map(jd_map_document(m))
-- changes nothing, and dump -> apply -> dump gives the same document.
CREATE FUNCTION jd_map_document(p_map_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'version', 1,
        'site', s.key,
        'slug', m.slug, 'name', m.name, 'goal', m.goal, 'scope', m.scope,
        'customer_group', m.customer_group, 'min_evidence', m.min_evidence,
        'personas', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'slug', p.slug, 'name', p.name, 'age_min', p.age_min, 'age_max', p.age_max,
                'job_role', p.job_role, 'family_status', p.family_status,
                'professional_goals', p.professional_goals, 'personal_interests', p.personal_interests,
                'description', p.description, 'data_sources', p.data_sources) ORDER BY p.position, p.id), '[]')
            FROM personas p WHERE p.map_id = m.id),
        'stages', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'slug', st.slug, 'name', st.name, 'meaning', st.meaning,
                'resources', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'kind', r.kind, 'name', r.name, 'notes', r.notes, 'owner', r.owner)
                        ORDER BY r.position, r.id), '[]')
                    FROM stage_resources r WHERE r.stage_id = st.id)) ORDER BY st.position, st.id), '[]')
            FROM stages st WHERE st.map_id = m.id),
        'touchpoints', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'slug', t.slug, 'name', t.name, 'channel', t.channel,
                'stages', (SELECT coalesce(jsonb_agg(st.slug ORDER BY st.position, st.id), '[]')
                             FROM touchpoint_stages ts JOIN stages st ON st.id = ts.stage_id
                            WHERE ts.touchpoint_id = t.id)) ORDER BY t.position, t.id), '[]')
            FROM touchpoints t WHERE t.map_id = m.id),
        'obstacles', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'slug', o.slug, 'name', o.name, 'description', o.description) ORDER BY o.position, o.id), '[]')
            FROM obstacles o WHERE o.map_id = m.id),
        'surveys', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'slug', sv.slug, 'title', sv.title, 'status', sv.status, 'locale', sv.locale,
                'display', sv.display, 'trigger', sv.trigger,
                'questions', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'key', q.key, 'kind', q.kind, 'lane', q.lane, 'prompt', q.prompt,
                        'required', q.required, 'options', q.options, 'stage', qs.slug,
                        'touchpoint', qt.slug, 'show_if', q.show_if) ORDER BY q.position, q.id), '[]')
                    FROM questions q LEFT JOIN stages qs ON qs.id = q.stage_id
                    LEFT JOIN touchpoints qt ON qt.id = q.touchpoint_id
                    WHERE q.survey_id = sv.id AND q.retired_at IS NULL)) ORDER BY sv.id), '[]')
            FROM surveys sv WHERE sv.map_id = m.id))
      FROM maps m JOIN sites s ON s.id = m.site_id
     WHERE m.id = p_map_id
$$;

-- One array of a document: each element is an object matched by slug (derived from the name
-- when absent) among the existing rows of p_table in p_parent_col = p_parent; returns the ids in
-- document order after calling p_put(parent, id or NULL, element + position).
CREATE FUNCTION jd__apply_list(p_doc jsonb, p_key text, p_table regclass, p_parent bigint, p_put text,
                               p_prefix text, p_match_col text DEFAULT 'slug', p_name_col text DEFAULT 'name',
                               p_strip text[] DEFAULT '{}', p_parent_col text DEFAULT 'map_id',
                               p_position boolean DEFAULT true)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    i int := 0;
    ident text;
    cur bigint;
    ids bigint[] := '{}';
    k text;
BEGIN
    IF NOT p_doc ? p_key OR jsonb_typeof(p_doc -> p_key) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_doc -> p_key) <> 'array' THEN
        PERFORM jd__fail(400, 'invalid_type', format('%s must be an array', p_key), p_prefix || p_key);
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(p_doc -> p_key) LOOP
        IF jsonb_typeof(e) <> 'object' THEN
            PERFORM jd__fail(400, 'invalid_type', format('%s[%s] must be an object', p_key, i), format('%s%s[%s]', p_prefix, p_key, i));
        END IF;
        IF p_match_col = 'slug' THEN
            ident := coalesce(e ->> 'slug', jd__slugify(e ->> p_name_col));
        ELSE
            ident := e ->> p_match_col;
        END IF;
        cur := NULL;
        IF ident IS NOT NULL THEN
            EXECUTE format('SELECT id FROM %s WHERE %I = $1 AND %s = $2 %s LIMIT 1', p_table, p_parent_col,
                           CASE WHEN p_match_col = 'slug' THEN 'slug' ELSE format('lower(%I)', p_match_col) END,
                           CASE WHEN p_table = 'questions'::regclass THEN 'AND retired_at IS NULL' ELSE '' END)
               INTO cur USING p_parent, CASE WHEN p_match_col = 'slug' THEN ident ELSE lower(ident) END;
        END IF;
        IF cur = ANY (ids) THEN
            PERFORM jd__fail(400, 'duplicate', format('%s[%s] repeats "%s"', p_key, i, ident),
                             format('%s%s[%s].%s', p_prefix, p_key, i, p_match_col));
        END IF;
        FOREACH k IN ARRAY p_strip LOOP
            e := e - k;
        END LOOP;
        EXECUTE format('SELECT %I($1, $2, $3, $4)', p_put)
           INTO cur USING p_parent, cur, CASE WHEN p_position THEN e || jsonb_build_object('position', i + 1) ELSE e END,
                          format('%s%s[%s].', p_prefix, p_key, i);
        ids := ids || cur;
        i := i + 1;
    END LOOP;
    RETURN ids;
END $$;

-- Applies a map document (see jd_map_document): the map is found by site + slug and created
-- when missing; personas, stages (with resources), touchpoints, obstacles and surveys (with
-- questions) are matched by slug (resources by name, questions by key) and created or updated.
-- Items missing from the document are kept, unless the document says "prune": true: then they
-- are deleted (409 when answers refer to them; answered questions are retired instead).
-- Applying the same document twice changes nothing the second time. Errors name the field,
-- e.g. "touchpoints[2].stages[0]".
CREATE FUNCTION jd_apply_map(doc jsonb, actor text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c jd_api_ctx := ROW(coalesce(nullif(actor, ''), 'journeyctl'), 'admin', NULL, NULL)::jd_api_ctx;
    d jsonb;
    sid bigint;
    mid bigint;
    created boolean := false;
    before jsonb;
    after jsonb;
    ids bigint[];
    st_ids bigint[];
    sv_ids bigint[];
    e jsonb;
    i int;
    prune boolean;
    victim record;
BEGIN
    IF doc IS NULL OR jsonb_typeof(doc) <> 'object' THEN
        PERFORM jd__fail(400, 'bad_body', 'a map document is a JSON object');
    END IF;
    d := jd__check(doc, '{"version":"int","site":"ref","slug":"text","name":"text","goal":"text","scope":"text",
        "customer_group":"text","min_evidence":"int","personas":"array","stages":"array","touchpoints":"array",
        "obstacles":"array","surveys":"array","prune":"bool"}');
    IF coalesce((d ->> 'version')::int, 1) <> 1 THEN
        PERFORM jd__fail(400, 'invalid_value', 'this server reads map documents of version 1', 'version');
    END IF;
    SELECT s.id INTO sid FROM sites s
     WHERE s.key = d ->> 'site' OR (jsonb_typeof(d -> 'site') = 'number' AND s.id::text = d ->> 'site');
    IF sid IS NULL THEN
        PERFORM jd__fail(400, 'unknown_site', format('no site %s', coalesce(d ->> 'site', '(field "site" is required)')), 'site');
    END IF;
    prune := coalesce((d ->> 'prune')::boolean, false);
    d := d || jsonb_build_object('slug', coalesce(d ->> 'slug', jd__slugify(d ->> 'name')));
    SELECT id INTO mid FROM maps WHERE site_id = sid AND slug = d ->> 'slug';
    IF mid IS NULL THEN
        created := true;
        mid := jd__put_map(sid, NULL, d - 'version' - 'site' - 'personas' - 'stages' - 'touchpoints' - 'obstacles' - 'surveys' - 'prune');
    ELSE
        before := jd_map_document(mid);
        PERFORM jd__put_map(sid, mid, d - 'version' - 'site' - 'personas' - 'stages' - 'touchpoints' - 'obstacles' - 'surveys' - 'prune');
    END IF;

    st_ids := jd__apply_list(d, 'stages', 'stages', mid, 'jd__put_stage', '', p_strip => '{resources}');
    i := 0;
    FOR e IN SELECT * FROM jsonb_array_elements(coalesce(d -> 'stages', '[]')) LOOP
        ids := jd__apply_list(e, 'resources', 'stage_resources', st_ids[i + 1], 'jd__put_resource',
                              format('stages[%s].', i), 'name', p_parent_col => 'stage_id');
        IF prune AND ids IS NOT NULL THEN
            DELETE FROM stage_resources WHERE stage_id = st_ids[i + 1] AND NOT (id = ANY (ids));
        END IF;
        i := i + 1;
    END LOOP;
    IF created AND st_ids IS NULL THEN
        PERFORM jd__map_defaults(mid, true, false);
    END IF;
    ids := jd__apply_list(d, 'touchpoints', 'touchpoints', mid, 'jd__put_touchpoint', '');
    IF created AND ids IS NULL THEN
        PERFORM jd__map_defaults(mid, false, true);
    END IF;
    IF prune AND ids IS NOT NULL THEN
        FOR victim IN SELECT id FROM touchpoints WHERE map_id = mid AND NOT (id = ANY (ids)) LOOP
            PERFORM jd__delete_guard('{}', 'touchpoint', victim.id);
            DELETE FROM touchpoints WHERE id = victim.id;
        END LOOP;
    END IF;
    ids := jd__apply_list(d, 'personas', 'personas', mid, 'jd__put_persona', '');
    IF prune AND ids IS NOT NULL THEN
        FOR victim IN SELECT id FROM personas WHERE map_id = mid AND NOT (id = ANY (ids)) LOOP
            PERFORM jd__delete_guard('{}', 'persona', victim.id);
            DELETE FROM personas WHERE id = victim.id;
        END LOOP;
    END IF;
    ids := jd__apply_list(d, 'obstacles', 'obstacles', mid, 'jd__put_obstacle', '');
    IF prune AND ids IS NOT NULL THEN
        FOR victim IN SELECT id FROM obstacles WHERE map_id = mid AND NOT (id = ANY (ids)) LOOP
            PERFORM jd__delete_guard('{}', 'obstacle', victim.id);
            DELETE FROM obstacles WHERE id = victim.id;
        END LOOP;
    END IF;

    -- Surveys: saved without the live check, then their questions, then checked as a whole.
    sv_ids := jd__apply_list(d, 'surveys', 'surveys', mid, 'jd__put_survey_deferred', '', p_strip => '{questions}',
                             p_position => false);
    i := 0;
    FOR e IN SELECT * FROM jsonb_array_elements(coalesce(d -> 'surveys', '[]')) LOOP
        ids := jd__apply_list(e, 'questions', 'questions', sv_ids[i + 1], 'jd__put_question_deferred',
                              format('surveys[%s].', i), 'key', p_parent_col => 'survey_id');
        IF prune AND ids IS NOT NULL THEN
            UPDATE questions q SET retired_at = now()
             WHERE q.survey_id = sv_ids[i + 1] AND q.retired_at IS NULL AND NOT (q.id = ANY (ids))
               AND EXISTS (SELECT 1 FROM answers a WHERE a.question_id = q.id);
            DELETE FROM questions q
             WHERE q.survey_id = sv_ids[i + 1] AND q.retired_at IS NULL AND NOT (q.id = ANY (ids));
        END IF;
        PERFORM jd__check_branching(sv_ids[i + 1], format('surveys[%s].questions', i));
        PERFORM jd__check_live(sv_ids[i + 1], format('surveys[%s].', i));
        i := i + 1;
    END LOOP;
    IF prune AND sv_ids IS NOT NULL THEN
        FOR victim IN SELECT id FROM surveys WHERE map_id = mid AND NOT (id = ANY (sv_ids)) LOOP
            PERFORM jd__delete_guard('{}', 'survey', victim.id);
            DELETE FROM surveys WHERE id = victim.id;
        END LOOP;
    END IF;
    IF prune AND st_ids IS NOT NULL THEN
        FOR victim IN SELECT id FROM stages WHERE map_id = mid AND NOT (id = ANY (st_ids)) LOOP
            PERFORM jd__delete_guard('{}', 'stage', victim.id);
            DELETE FROM stages WHERE id = victim.id;
        END LOOP;
    END IF;

    after := jd_map_document(mid);
    IF created OR after IS DISTINCT FROM before THEN
        PERFORM jd__audit(c, 'apply', 'map', mid::text, sid,
                          jsonb_build_object('slug', d ->> 'slug', 'created', created, 'prune', prune));
    END IF;
    RETURN jsonb_build_object('map_id', mid, 'site_id', sid, 'slug', d ->> 'slug', 'created', created,
                              'changed', created OR after IS DISTINCT FROM before);
END $$;

CREATE FUNCTION jd__put_survey_deferred(p_map bigint, p_id bigint, p_body jsonb, p_prefix text)
RETURNS bigint LANGUAGE sql AS $$ SELECT jd__put_survey(p_map, p_id, p_body, p_prefix, false) $$;

CREATE FUNCTION jd__put_question_deferred(p_survey bigint, p_id bigint, p_body jsonb, p_prefix text)
RETURNS bigint LANGUAGE sql AS $$ SELECT jd__put_question(p_survey, p_id, p_body, p_prefix, false) $$;

-- ===========================================================================================
-- 7. Interview findings import
-- ===========================================================================================

-- A timestamp from an ISO date or date-time, NULL when it is not one.
CREATE FUNCTION jd__try_timestamptz(p text) RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p !~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$' THEN
        RETURN NULL;
    END IF;
    RETURN p::timestamptz;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END $$;

-- Imports coded interview findings as answers with source 'interview'. Each row is an object:
--   persona, stage, touchpoint (slug or name), action, thought, emotion (1..5),
--   obstacle (slug or name; several separated by ';', or an array), quote, interviewee
--   (pseudonym), date (ISO), goal_reached (true/false/yes/no/met/failed), and optionally "line"
--   (the line number to report, e.g. in the CSV file; default: the position in the array).
-- stage is required, and at least one piece of evidence. Validation is one set-based pass. Good
-- rows are stored, bad rows are reported as {"line", "reason"}; with p_atomic nothing is stored
-- when any row is bad. Each row's client_id is an md5 of map, line and content, so importing the
-- same file again stores nothing new ("inserted" counts the rows new to the database).
CREATE FUNCTION jd_import_findings(p_map_id bigint, p_rows jsonb, p_atomic boolean, p_actor text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    sid bigint;
    res jsonb;
BEGIN
    SELECT site_id INTO sid FROM maps WHERE id = p_map_id;
    IF sid IS NULL THEN
        PERFORM jd__fail(404, 'not_found', format('no map with id %s', p_map_id));
    END IF;
    IF p_rows IS NULL OR jsonb_typeof(p_rows) <> 'array' THEN
        PERFORM jd__fail(400, 'bad_body', 'findings are a JSON array of objects', 'rows');
    END IF;
    WITH raw AS (
        SELECT t.o AS ord, t.e,
               CASE WHEN jsonb_typeof(t.e -> 'line') = 'number' AND (t.e ->> 'line') ~ '^[0-9]{1,9}$'
                    THEN (t.e ->> 'line')::int ELSE t.o::int END AS line,
               jsonb_typeof(t.e) = 'object' AS is_obj
          FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS t(e, o)),
    f AS MATERIALIZED (
        SELECT r.*,
               nullif(btrim(CASE WHEN is_obj THEN e ->> 'persona' END), '') AS persona_ref,
               nullif(btrim(CASE WHEN is_obj THEN e ->> 'stage' END), '') AS stage_ref,
               nullif(btrim(CASE WHEN is_obj THEN e ->> 'touchpoint' END), '') AS touchpoint_ref,
               nullif(btrim(CASE WHEN is_obj THEN e ->> 'emotion' END), '') AS emotion_txt,
               nullif(btrim(CASE WHEN is_obj THEN e ->> 'date' END), '') AS date_txt,
               nullif(lower(btrim(CASE WHEN is_obj THEN e ->> 'goal_reached' END)), '') AS goal_txt,
               nullif(CASE WHEN is_obj THEN e ->> 'action' END, '') AS action,
               nullif(CASE WHEN is_obj THEN e ->> 'thought' END, '') AS thought,
               nullif(CASE WHEN is_obj THEN e ->> 'quote' END, '') AS quote,
               nullif(btrim(CASE WHEN is_obj THEN e ->> 'interviewee' END), '') AS interviewee,
               CASE WHEN NOT is_obj THEN '{}'::text[]
                    WHEN jsonb_typeof(coalesce(e -> 'obstacle', e -> 'obstacles')) = 'array'
                    THEN ARRAY(SELECT btrim(x) FROM jsonb_array_elements_text(coalesce(e -> 'obstacle', e -> 'obstacles')) x
                                WHERE btrim(x) <> '')
                    ELSE ARRAY(SELECT btrim(x) FROM regexp_split_to_table(coalesce(e ->> 'obstacle', e ->> 'obstacles', ''), ';') x
                                WHERE btrim(x) <> '') END AS obstacle_refs,
               CASE WHEN is_obj THEN ARRAY(SELECT k FROM jsonb_object_keys(e) k
                    WHERE NOT k IN ('persona', 'stage', 'touchpoint', 'action', 'thought', 'emotion', 'obstacle',
                                    'obstacles', 'quote', 'interviewee', 'date', 'goal_reached', 'line')
                      AND k NOT LIKE '\_%') END AS unknown_keys
          FROM raw r),
    -- Lookups: slug first, then case-insensitive name (hash joins, no per-row subqueries).
    ref AS MATERIALIZED (
        SELECT 'persona' AS kind, slug AS k, id, 0 AS pri FROM personas WHERE map_id = p_map_id
        UNION ALL SELECT 'persona', lower(name), id, 1 FROM personas WHERE map_id = p_map_id
        UNION ALL SELECT 'stage', slug, id, 0 FROM stages WHERE map_id = p_map_id
        UNION ALL SELECT 'stage', lower(name), id, 1 FROM stages WHERE map_id = p_map_id
        UNION ALL SELECT 'touchpoint', slug, id, 0 FROM touchpoints WHERE map_id = p_map_id
        UNION ALL SELECT 'touchpoint', lower(name), id, 1 FROM touchpoints WHERE map_id = p_map_id
        UNION ALL SELECT 'obstacle', slug, id, 0 FROM obstacles WHERE map_id = p_map_id
        UNION ALL SELECT 'obstacle', lower(name), id, 1 FROM obstacles WHERE map_id = p_map_id),
    pref AS MATERIALIZED (SELECT DISTINCT ON (kind, k) kind, k, id FROM ref ORDER BY kind, k, pri, id),
    ob AS MATERIALIZED (
        SELECT f.ord, array_agg(o.id ORDER BY u.n) AS ids,
               (array_agg(u.x ORDER BY u.n) FILTER (WHERE o.id IS NULL))[1] AS unknown
          FROM f CROSS JOIN LATERAL unnest(f.obstacle_refs) WITH ORDINALITY AS u(x, n)
          LEFT JOIN pref o ON o.kind = 'obstacle' AND o.k = lower(u.x)
         GROUP BY f.ord),
    l AS MATERIALIZED (
        SELECT f.*,
               coalesce(p1.id, p2.id) AS persona_id,
               coalesce(s1.id, s2.id) AS stage_id,
               coalesce(t1.id, t2.id) AS touchpoint_id,
               coalesce(ob.ids, '{}') AS obstacle_found,
               ob.unknown AS obstacle_unknown,
               CASE WHEN f.emotion_txt ~ '^[1-5]$' THEN f.emotion_txt::smallint END AS emotion,
               CASE WHEN f.goal_txt IN ('true', 'yes', 'y', '1', 'met', 'reached') THEN true
                    WHEN f.goal_txt IN ('false', 'no', 'n', '0', 'failed', 'not met', 'not reached') THEN false END AS goal_reached,
               CASE WHEN f.date_txt IS NOT NULL THEN jd__try_timestamptz(f.date_txt) END AS client_ts
          FROM f
          LEFT JOIN pref p1 ON p1.kind = 'persona' AND p1.k = f.persona_ref
          LEFT JOIN pref p2 ON p2.kind = 'persona' AND p2.k = lower(f.persona_ref)
          LEFT JOIN pref s1 ON s1.kind = 'stage' AND s1.k = f.stage_ref
          LEFT JOIN pref s2 ON s2.kind = 'stage' AND s2.k = lower(f.stage_ref)
          LEFT JOIN pref t1 ON t1.kind = 'touchpoint' AND t1.k = f.touchpoint_ref
          LEFT JOIN pref t2 ON t2.kind = 'touchpoint' AND t2.k = lower(f.touchpoint_ref)
          LEFT JOIN ob ON ob.ord = f.ord),
    allowed AS MATERIALIZED (
        SELECT ts.stage_id, ts.touchpoint_id FROM touchpoint_stages ts JOIN stages s ON s.id = ts.stage_id
         WHERE s.map_id = p_map_id),
    v AS MATERIALIZED (
        SELECT l.*,
               array_remove(ARRAY[
                   CASE WHEN NOT l.is_obj THEN 'the row is not a JSON object' END,
                   CASE WHEN l.is_obj AND cardinality(l.unknown_keys) > 0
                        THEN format('unknown column %s', array_to_string(l.unknown_keys, ', ')) END,
                   CASE WHEN l.is_obj AND l.stage_ref IS NULL THEN 'stage is required' END,
                   CASE WHEN l.stage_ref IS NOT NULL AND l.stage_id IS NULL THEN format('unknown stage "%s"', l.stage_ref) END,
                   CASE WHEN l.persona_ref IS NOT NULL AND l.persona_id IS NULL THEN format('unknown persona "%s"', l.persona_ref) END,
                   CASE WHEN l.touchpoint_ref IS NOT NULL AND l.touchpoint_id IS NULL
                        THEN format('unknown touchpoint "%s"', l.touchpoint_ref) END,
                   CASE WHEN l.stage_id IS NOT NULL AND l.touchpoint_id IS NOT NULL AND al.stage_id IS NULL
                        THEN format('touchpoint "%s" is not allowed in stage "%s"', l.touchpoint_ref, l.stage_ref) END,
                   CASE WHEN l.obstacle_unknown IS NOT NULL THEN format('unknown obstacle "%s"', l.obstacle_unknown) END,
                   CASE WHEN l.emotion_txt IS NOT NULL AND l.emotion IS NULL
                        THEN format('emotion must be an integer from 1 to 5, not "%s"', left(l.emotion_txt, 40)) END,
                   CASE WHEN l.goal_txt IS NOT NULL AND l.goal_reached IS NULL
                        THEN format('goal_reached must be yes/no (true/false, met/failed), not "%s"', left(l.goal_txt, 40)) END,
                   CASE WHEN l.date_txt IS NOT NULL AND l.client_ts IS NULL
                        THEN format('date must be an ISO date (YYYY-MM-DD), not "%s"', left(l.date_txt, 40)) END,
                   CASE WHEN length(l.action) > 4000 THEN 'action is longer than 4000 characters' END,
                   CASE WHEN length(l.thought) > 4000 THEN 'thought is longer than 4000 characters' END,
                   CASE WHEN length(l.quote) > 4000 THEN 'quote is longer than 4000 characters' END,
                   CASE WHEN length(l.interviewee) > 200 THEN 'interviewee is longer than 200 characters' END,
                   CASE WHEN l.is_obj AND l.action IS NULL AND l.thought IS NULL AND l.emotion_txt IS NULL AND l.quote IS NULL
                             AND cardinality(l.obstacle_refs) = 0 AND l.goal_txt IS NULL
                        THEN 'no evidence: give an action, thought, emotion, obstacle, quote or goal_reached' END
               ], NULL) AS reasons
          FROM l LEFT JOIN allowed al ON al.stage_id = l.stage_id AND al.touchpoint_id = l.touchpoint_id),
    summary AS (
        SELECT count(*) FILTER (WHERE reasons = '{}') AS good, count(*) FILTER (WHERE reasons <> '{}') AS bad FROM v),
    ins AS (
        INSERT INTO answers (site_id, map_id, client_id, source, persona_id, stage_id, touchpoint_id, emotion,
                             goal_reached, obstacle_ids, thought, action, quote, value, interviewee, client_ts)
        SELECT sid, p_map_id, md5(p_map_id::text || ':' || v.line::text || ':' || v.e::text)::uuid, 'interview',
               v.persona_id, v.stage_id, v.touchpoint_id, v.emotion, v.goal_reached, v.obstacle_found,
               v.thought, v.action, v.quote, v.e, v.interviewee, v.client_ts
          FROM v, summary
         WHERE v.reasons = '{}' AND NOT (p_atomic AND summary.bad > 0)
        ON CONFLICT (site_id, client_id) DO NOTHING
        RETURNING 1)
    SELECT jsonb_build_object(
               'accepted', CASE WHEN p_atomic AND s.bad > 0 THEN 0 ELSE s.good END,
               'rejected', s.bad,
               'inserted', (SELECT count(*) FROM ins),
               'atomic', coalesce(p_atomic, false),
               'errors', (SELECT coalesce(jsonb_agg(jsonb_build_object('line', v.line, 'reason', array_to_string(v.reasons, '; '))
                                                    ORDER BY v.ord), '[]')
                            FROM v WHERE v.reasons <> '{}'))
      INTO res
      FROM summary s;
    PERFORM jd__audit(ROW(coalesce(nullif(p_actor, ''), 'journeyctl'), 'admin', NULL, NULL)::jd_api_ctx, 'import', 'map',
                      p_map_id::text, sid, res - 'errors');
    RETURN res;
END $$;

-- ===========================================================================================
-- 8. journeyctl conveniences
-- ===========================================================================================

-- Creates a site; returns {"id", "key"} (key: 24 random url-safe characters).
CREATE FUNCTION jd_site_create(name text, origins text[], consent_mode text, actor text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c jd_api_ctx := ROW(coalesce(nullif(actor, ''), 'journeyctl'), 'admin', NULL, NULL)::jd_api_ctx;
    body jsonb := jsonb_strip_nulls(jsonb_build_object('name', name, 'allowed_origins', to_jsonb(coalesce(origins, '{}')),
                                                       'consent_mode', consent_mode));
    sid bigint;
BEGIN
    sid := jd__put_site(NULL, body);
    PERFORM jd__audit(c, 'create', 'site', sid::text, sid, body);
    RETURN jsonb_build_object('id', sid, 'key', (SELECT key FROM sites WHERE id = sid));
END $$;

-- Creates a token for every site (site_key NULL) or one site; returns {"id", "token"}. The raw
-- token is shown only here.
CREATE FUNCTION jd_token_create(name text, scope text, site_key text, expires_days int, actor text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c jd_api_ctx := ROW(coalesce(nullif(actor, ''), 'journeyctl'), 'admin', NULL, NULL)::jd_api_ctx;
    sid bigint;
    t jsonb;
BEGIN
    IF site_key IS NOT NULL THEN
        SELECT id INTO sid FROM sites WHERE key = site_key;
        IF sid IS NULL THEN
            PERFORM jd__fail(400, 'unknown_site', format('no site with key "%s"', site_key), 'site');
        END IF;
    END IF;
    IF expires_days IS NOT NULL AND expires_days < 1 THEN
        PERFORM jd__fail(400, 'invalid_value', 'expires_days must be at least 1', 'expires_days');
    END IF;
    t := jd__token_new(c, name, coalesce(scope, 'read'), sid,
                       CASE WHEN expires_days IS NOT NULL THEN now() + make_interval(days => expires_days) END);
    RETURN jsonb_build_object('id', t -> 'id', 'token', t -> 'token', 'scope', t -> 'scope', 'site_id', t -> 'site_id',
                              'expires_at', t -> 'expires_at');
END $$;

-- Revokes a token (idempotent); returns the token's metadata.
CREATE FUNCTION jd_token_revoke(id bigint, actor text)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN jd__token_revoke(ROW(coalesce(nullif(actor, ''), 'journeyctl'), 'admin', NULL, NULL)::jd_api_ctx, id);
END $$;
