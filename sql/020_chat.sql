-- Live chat with transcript capture (issue 6): the data layer.
--
-- One conversation log per conversation. Every message gets a server-assigned sequence number
-- (seq) that is gapless and strictly increasing per conversation, and a client id (the frame's
-- id) that makes a resend idempotent. The daemon writes messages in batches through
-- jd_chat_insert(jsonb), the same shape as the ingest store's json_to_recordset inserts, and acks
-- after COMMIT. Every change a live client must see (new message, typing, receipt, status, codes)
-- ends with pg_notify('journeyd_chat', conversation_id): the payload is only the id, the data is
-- always read from these tables (jd_chat_poll), so a missed notification can never lose data.
-- docs/chat.md is the design the daemon glue implements on top of this file.
--
-- Layout:
--   1. schema
--   2. helpers (errors, tokens, JSON, timestamps, redaction)
--   3. agents: accounts, login with lockout, sessions, presence, canned responses
--   4. conversations: open, resume, insert, fetch/poll, receipts, typing, close, rating
--   5. agent inbox and conversation detail
--   6. research coding of messages, history, and the chat_evidence view
--   7. transcripts (JSONL, CSV, plain text, HTML) with optional redaction
--   8. privacy: erase, access, retention and housekeeping
--
-- Errors raised for callers follow sql/002's convention (but use their own helper so this file
-- does not depend on 002's internals): SQLSTATE 'JD' || http status, MESSAGE a sentence, DETAIL
-- a stable code, HINT the offending field. jd_chat_insert instead raises ordinary class 22/23
-- errors, so the ingest store's "split the batch, reject the bad row" rule applies unchanged.
--
-- Concurrency: everything here assumes READ COMMITTED (PostgreSQL's default, and what the daemon
-- uses). jd_chat_insert relies on each statement of a VOLATILE function taking a fresh snapshot
-- after the conversation row lock was granted.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- ===========================================================================================
-- 1. Schema
-- ===========================================================================================

-- Agent accounts, per site. password_hash is bcrypt (pgcrypto crypt(pw, gen_salt('bf', 10))).
CREATE TABLE agents (
    id            bigserial PRIMARY KEY,
    site_id       bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    email         text NOT NULL CHECK (length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role          text NOT NULL DEFAULT 'agent' CHECK (role IN ('admin', 'agent')),
    password_hash text NOT NULL CHECK (password_hash ~ '^\$2[ab]\$[0-9]{2}\$[./A-Za-z0-9]{53}$'),
    disabled_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, site_id)   -- target of the (agent_id, site_id) foreign keys below
);
CREATE UNIQUE INDEX agents_site_email ON agents (site_id, lower(email));

-- Console sessions. The cookie carries the token; only sha256(token) is stored (the argument in
-- 002 for admin tokens applies: a 256-bit random token looked up by its hash).
CREATE TABLE agent_sessions (
    id           bigserial PRIMARY KEY,
    agent_id     bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    CHECK (expires_at > created_at)
);
CREATE INDEX agent_sessions_agent ON agent_sessions (agent_id) WHERE revoked_at IS NULL;
CREATE INDEX agent_sessions_expires ON agent_sessions (expires_at);

-- Failed logins, keyed by what was typed (site key, lower-cased e-mail) whether or not such an
-- account exists, so lockout behaves the same for real and invented addresses.
CREATE TABLE agent_login_failures (
    id        bigserial PRIMARY KEY,
    site_key  text NOT NULL,
    email     text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_login_failures_key ON agent_login_failures (site_key, email, failed_at);

-- Who is online: one row per agent and daemon instance holding a console connection for them,
-- refreshed by a heartbeat. Online = a row seen within the last 30 seconds.
CREATE TABLE agent_presence (
    agent_id  bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    instance  text NOT NULL CHECK (length(instance) BETWEEN 1 AND 200),
    last_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, instance)
);
CREATE INDEX agent_presence_instance ON agent_presence (instance);

CREATE TABLE canned_responses (
    id         bigserial PRIMARY KEY,
    site_id    bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    shortcut   text NOT NULL CHECK (shortcut ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    title      text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body       text NOT NULL CHECK (length(body) BETWEEN 1 AND 4000),
    created_by bigint REFERENCES agents (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, shortcut)
);

-- One row per conversation. last_seq is the sequence counter: jd_chat_insert bumps it under the
-- row lock, which serialises writers of one conversation across every daemon instance.
-- Receipt watermarks: visitor_* = how far the visitor has received/read the agents' side,
-- agent_* = how far agents have received/read the visitor's side. codes_version changes whenever
-- a code of one of its messages changes, so instances know to resend codes to consoles.
-- respondent_id and session_id carry no foreign key (like answers): the chat may open before the
-- ingest batch holding the session commits, and erasure handles them explicitly.
CREATE TABLE conversations (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id               bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    token_hash            bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    open_client_id        uuid,
    respondent_id         uuid,
    session_id            uuid,
    status                text NOT NULL DEFAULT 'waiting' CHECK (status IN ('open', 'waiting', 'closed')),
    visitor_email         text CHECK (length(visitor_email) <= 254
                                      AND visitor_email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    assigned_agent_id     bigint,
    page_url              text NOT NULL DEFAULT '' CHECK (length(page_url) <= 2048),
    stage_id              bigint REFERENCES stages (id) ON DELETE SET NULL,
    touchpoint_id         bigint REFERENCES touchpoints (id) ON DELETE SET NULL,
    last_seq              bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    visitor_typing_until  timestamptz,
    agent_typing_until    timestamptz,
    agent_typing_id       bigint REFERENCES agents (id) ON DELETE SET NULL,
    visitor_delivered_seq bigint NOT NULL DEFAULT 0,
    visitor_read_seq      bigint NOT NULL DEFAULT 0,
    agent_delivered_seq   bigint NOT NULL DEFAULT 0,
    agent_read_seq        bigint NOT NULL DEFAULT 0,
    codes_version         bigint NOT NULL DEFAULT 0,
    last_message_at       timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    closed_at             timestamptz,
    closed_by             bigint REFERENCES agents (id) ON DELETE SET NULL,
    UNIQUE (id, site_id),
    UNIQUE (site_id, open_client_id),
    FOREIGN KEY (assigned_agent_id, site_id) REFERENCES agents (id, site_id)
        ON DELETE SET NULL (assigned_agent_id),
    CHECK (0 <= visitor_read_seq AND visitor_read_seq <= visitor_delivered_seq
           AND visitor_delivered_seq <= last_seq),
    CHECK (0 <= agent_read_seq AND agent_read_seq <= agent_delivered_seq
           AND agent_delivered_seq <= last_seq),
    CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
CREATE INDEX conversations_inbox ON conversations (site_id, status, last_message_at DESC);
CREATE INDEX conversations_created ON conversations (site_id, created_at);
CREATE INDEX conversations_respondent ON conversations (site_id, respondent_id);
CREATE INDEX conversations_email ON conversations (site_id, lower(visitor_email))
    WHERE visitor_email IS NOT NULL;

-- The conversation log. (conversation_id, site_id) and (agent_id, site_id) are composite foreign
-- keys: a message can only land in a conversation of its own site, and only an agent of that site
-- can write it. page_url/stage_id/touchpoint_id are the visitor's journey context when written.
CREATE TABLE messages (
    id              bigserial PRIMARY KEY,
    conversation_id uuid NOT NULL,
    site_id         bigint NOT NULL,
    seq             bigint NOT NULL CHECK (seq >= 1),
    client_id       uuid NOT NULL,
    sender          text NOT NULL DEFAULT 'visitor' CHECK (sender IN ('visitor', 'agent', 'system')),
    agent_id        bigint,
    kind            text NOT NULL DEFAULT 'text' CHECK (kind IN ('text', 'note', 'offline')),
    body            text NOT NULL CHECK (length(body) BETWEEN 1 AND 4000 AND body ~ '[^[:space:]]'),
    page_url        text CHECK (length(page_url) <= 2048),
    stage_id        bigint REFERENCES stages (id) ON DELETE SET NULL,
    touchpoint_id   bigint REFERENCES touchpoints (id) ON DELETE SET NULL,
    client_ts       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    read_at         timestamptz,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, client_id),
    FOREIGN KEY (conversation_id, site_id) REFERENCES conversations (id, site_id) ON DELETE CASCADE,
    FOREIGN KEY (agent_id, site_id) REFERENCES agents (id, site_id) ON DELETE SET NULL (agent_id),
    CHECK (kind <> 'note' OR sender = 'agent'),       -- notes are private to agents
    CHECK (kind <> 'offline' OR sender = 'visitor'),  -- left while no agent was online
    CHECK (sender = 'agent' OR agent_id IS NULL)
);
CREATE INDEX messages_site_created ON messages (site_id, created_at);

-- Research codes on a message or on the span [span_start, span_end) of its body, counted in
-- Unicode code points (PostgreSQL's length/substr, not JavaScript's UTF-16 units). A message can
-- carry several codes. A revision inserts a new row and marks the old one superseded_at /
-- superseded_by (history kept); a retraction sets superseded_at alone.
CREATE TABLE message_codes (
    id            bigserial PRIMARY KEY,
    message_id    bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    map_id        bigint NOT NULL REFERENCES maps (id) ON DELETE CASCADE,
    span_start    integer,
    span_end      integer,
    emotion       smallint CHECK (emotion BETWEEN 1 AND 5),
    obstacle_ids  bigint[] NOT NULL DEFAULT '{}',
    persona_id    bigint REFERENCES personas (id) ON DELETE SET NULL,
    stage_id      bigint REFERENCES stages (id) ON DELETE SET NULL,
    touchpoint_id bigint REFERENCES touchpoints (id) ON DELETE SET NULL,
    memo          text CHECK (length(memo) <= 2000),
    coder_id      bigint REFERENCES agents (id) ON DELETE SET NULL,
    client_id     uuid UNIQUE,   -- the console frame's id: a resent code.create/revise is not doubled
    created_at    timestamptz NOT NULL DEFAULT now(),
    superseded_at timestamptz,
    superseded_by bigint REFERENCES message_codes (id) ON DELETE CASCADE,
    CHECK ((span_start IS NULL) = (span_end IS NULL)),
    CHECK (span_start IS NULL OR (span_start >= 0 AND span_end > span_start)),
    CHECK (superseded_by IS NULL OR superseded_at IS NOT NULL)
);
CREATE INDEX message_codes_message ON message_codes (message_id);
CREATE INDEX message_codes_current ON message_codes (message_id) WHERE superseded_at IS NULL;
-- History is a chain: a code is revised at most once.
CREATE UNIQUE INDEX message_codes_superseded_by ON message_codes (superseded_by)
    WHERE superseded_by IS NOT NULL;

-- ===========================================================================================
-- 2. Helpers
-- ===========================================================================================

CREATE FUNCTION jd_chat__fail(p_status int, p_code text, p_message text, p_field text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'JD' || p_status::text, MESSAGE = p_message,
                          DETAIL = p_code, HINT = coalesce(p_field, '');
END $$;

CREATE FUNCTION jd_chat__hash(p_token text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(convert_to(coalesce(p_token, ''), 'UTF8'))
$$;

-- prefix + 43 base64url characters encoding 32 bytes from pgcrypto's strong random source.
CREATE FUNCTION jd_chat__new_token(p_prefix text) RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT p_prefix || rtrim(translate(encode(gen_random_bytes(32), 'base64'), E'+/\n', '-_'), '=')
$$;

-- RFC 3339 UTC with milliseconds, whatever the session's TimeZone.
CREATE FUNCTION jd_chat__ts(p timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(p AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

CREATE FUNCTION jd_chat__notify(p_conversation uuid) RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('journeyd_chat', p_conversation::text)
$$;

-- The agent, if it exists and is enabled; 403 otherwise.
CREATE FUNCTION jd_chat__agent(p_agent_id bigint) RETURNS agents LANGUAGE plpgsql STABLE AS $$
DECLARE
    a agents;
BEGIN
    SELECT * INTO a FROM agents WHERE id = p_agent_id AND disabled_at IS NULL;
    IF NOT FOUND THEN
        PERFORM jd_chat__fail(403, 'forbidden', 'unknown or disabled agent', 'agent');
    END IF;
    RETURN a;
END $$;

-- The conversation, locked for update, when p_agent_id (if given) belongs to its site. Another
-- site's conversation is reported exactly like a missing one (404), so ids cannot be probed.
CREATE FUNCTION jd_chat__conversation(p_conversation uuid, p_agent_id bigint DEFAULT NULL,
                                      p_lock boolean DEFAULT true)
RETURNS conversations LANGUAGE plpgsql AS $$
DECLARE
    c conversations;
    a agents;
BEGIN
    IF p_agent_id IS NOT NULL THEN
        a := jd_chat__agent(p_agent_id);
    END IF;
    IF p_lock THEN
        SELECT * INTO c FROM conversations WHERE id = p_conversation FOR NO KEY UPDATE;
    ELSE
        SELECT * INTO c FROM conversations WHERE id = p_conversation;
    END IF;
    IF NOT FOUND OR (p_agent_id IS NOT NULL AND c.site_id <> a.site_id) THEN
        PERFORM jd_chat__fail(404, 'not_found', 'no such conversation', 'conversation');
    END IF;
    RETURN c;
END $$;

-- Luhn check over the digits of p (other characters ignored).
CREATE FUNCTION jd_chat__luhn(p text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT count(*) > 0 AND sum(CASE WHEN i % 2 = 1 THEN (d * 2) - CASE WHEN d * 2 > 9 THEN 9 ELSE 0 END
                                     ELSE d END) % 10 = 0
    FROM (SELECT d::int AS d, row_number() OVER () - 1 AS i
          FROM regexp_split_to_table(reverse(regexp_replace(p, '[^0-9]', '', 'g')), '') AS d
          WHERE d <> '') x
$$;

-- PII masking, the same rules as the daemon's redact.c: e-mail addresses -> [email]; number-like
-- runs (digits joined by single spaces, dashes, dots or parentheses, optional leading '+', not
-- glued to letters) -> [ip] for IPv4, [card] for 13-19 digits passing Luhn, [phone] for 9-15
-- digits. Shorter runs (prices, dates, times, order numbers) survive, and a comma, slash or colon
-- ends a run, so "£1,299.99", "29/11/2026", "2026-11-29" and "10:30" are kept.
CREATE FUNCTION jd_chat_redact(p text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    -- (the character before the run) (the run) (a letter glued to its end, if any)
    run_re constant text :=
        '([^[:alnum:]])(\+?\(?[0-9](?:(?:[ .-]\(?|\)[ .-]?|\()?[0-9])*)([[:alpha:]]?)';
    src text;
    out text := '';
    i int := 2;   -- first character of src not yet copied to out (src[1] is a sentinel space)
    pos int;
    m text[];
    digits int;
    mask text;
BEGIN
    IF p IS NULL THEN
        RETURN NULL;
    END IF;
    src := ' ' || regexp_replace(p, '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}',
                                 '[email]', 'g');
    LOOP
        -- Searching from i - 1 lets the last copied character decide whether a run may start.
        pos := regexp_instr(src, run_re, i - 1, 1, 0, '', 2);
        EXIT WHEN pos = 0;
        m := regexp_match(substr(src, i - 1), run_re);
        digits := length(regexp_replace(m[2], '[^0-9]', '', 'g'));
        mask := NULL;
        IF m[3] = '' THEN
            IF m[2] ~ '^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$'
               AND (SELECT bool_and(o::int <= 255) FROM unnest(string_to_array(m[2], '.')) o) THEN
                mask := '[ip]';
            ELSIF digits BETWEEN 13 AND 19 AND jd_chat__luhn(m[2]) THEN
                mask := '[card]';
            ELSIF digits BETWEEN 9 AND 15 THEN
                mask := '[phone]';
            END IF;
        END IF;
        out := out || substr(src, i, pos - i) || coalesce(mask, m[2]);
        i := pos + length(m[2]);
    END LOOP;
    RETURN out || substr(src, i);
END $$;

-- One message as the JSON a client receives (docs/chat.md, frame chat.message). Agents get the
-- database id (needed for coding) and the author's id; visitors never get notes (the callers
-- filter them) and see an agent only by name.
CREATE FUNCTION jd_chat__message_json(m messages, p_for_agent boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'conversation', m.conversation_id,
        'seq', m.seq,
        'id', m.client_id,
        'message_id', CASE WHEN p_for_agent THEN m.id END,
        'sender', m.sender,
        'agent', CASE WHEN m.agent_id IS NOT NULL THEN
                     jsonb_strip_nulls(jsonb_build_object('id', CASE WHEN p_for_agent THEN a.id END,
                                                          'name', a.name)) END,
        'kind', m.kind,
        'body', m.body,
        'page', m.page_url,
        'stage', st.slug,
        'touchpoint', tp.slug,
        'at', jd_chat__ts(m.created_at),
        'delivered_at', jd_chat__ts(m.delivered_at),
        'read_at', jd_chat__ts(m.read_at)))
    FROM (SELECT 1) one
    LEFT JOIN agents a ON a.id = m.agent_id
    LEFT JOIN stages st ON st.id = m.stage_id
    LEFT JOIN touchpoints tp ON tp.id = m.touchpoint_id
$$;

-- ===========================================================================================
-- 3. Agents
-- ===========================================================================================

-- bcrypt uses at most 72 bytes of a password; longer ones are refused rather than silently cut.
CREATE FUNCTION jd_chat__check_password(p_password text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_password IS NULL OR length(p_password) < 10 OR octet_length(p_password) > 72 THEN
        PERFORM jd_chat__fail(400, 'weak_password',
                              'a password needs 10 characters at least and 72 bytes at most',
                              'password');
    END IF;
END $$;

CREATE FUNCTION jd_agent_create(p_site_id bigint, p_email text, p_name text, p_role text,
                                p_password text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    PERFORM jd_chat__check_password(p_password);
    IF coalesce(p_role, 'agent') NOT IN ('admin', 'agent') THEN
        PERFORM jd_chat__fail(400, 'invalid_value', 'role must be admin or agent', 'role');
    END IF;
    INSERT INTO agents (site_id, email, name, role, password_hash)
    VALUES (p_site_id, btrim(p_email), btrim(p_name), coalesce(p_role, 'agent'),
            crypt(p_password, gen_salt('bf', 10)))
    RETURNING id INTO v_id;
    RETURN v_id;
EXCEPTION WHEN unique_violation THEN
    PERFORM jd_chat__fail(409, 'conflict', 'an agent with this e-mail exists on this site', 'email');
    RETURN NULL;
END $$;

-- A new password revokes every session of the agent.
CREATE FUNCTION jd_agent_set_password(p_agent_id bigint, p_password text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM jd_chat__check_password(p_password);
    UPDATE agents SET password_hash = crypt(p_password, gen_salt('bf', 10)), updated_at = now()
    WHERE id = p_agent_id;
    IF NOT FOUND THEN
        PERFORM jd_chat__fail(404, 'not_found', 'no such agent', 'agent');
    END IF;
    UPDATE agent_sessions SET revoked_at = now() WHERE agent_id = p_agent_id AND revoked_at IS NULL;
    PERFORM pg_notify('journeyd_agent', p_agent_id::text);
END $$;

-- Disabling keeps the account (its messages and codes keep their author) but ends every session.
CREATE FUNCTION jd_agent_disable(p_agent_id bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agents SET disabled_at = coalesce(disabled_at, now()), updated_at = now()
    WHERE id = p_agent_id;
    IF NOT FOUND THEN
        PERFORM jd_chat__fail(404, 'not_found', 'no such agent', 'agent');
    END IF;
    UPDATE agent_sessions SET revoked_at = now() WHERE agent_id = p_agent_id AND revoked_at IS NULL;
    PERFORM jd_agent_presence(p_agent_id, ap.instance, false)
    FROM agent_presence ap WHERE ap.agent_id = p_agent_id;
    PERFORM pg_notify('journeyd_agent', p_agent_id::text);
END $$;

-- Signs an agent in. Always exactly one row: on success a token (the cookie value; only its hash
-- is stored) and the agent; on failure token is NULL and error is one of
--   invalid_credentials  unknown site, unknown e-mail, wrong password or disabled account (one
--                        answer for all, after one bcrypt computation in every case);
--   too_many_attempts    10 failures for this site key and e-mail within 15 minutes; the
--                        password is then not even checked, and existing and invented
--                        addresses lock alike, so neither timing nor answers reveal accounts.
-- Failures are recorded by a normal return (not an exception), so they commit. Logins for one
-- site key and e-mail are serialised by an advisory lock, so parallel guesses cannot overshoot.
CREATE FUNCTION jd_agent_login(p_site_key text, p_email text, p_password text,
                               p_ttl interval DEFAULT interval '12 hours')
RETURNS TABLE (token text, agent jsonb, expires_at timestamptz, error text)
LANGUAGE plpgsql AS $$
DECLARE
    -- bcrypt (cost 10) of a random string nobody knows: the comparison made for unknown e-mails.
    dummy constant text := '$2a$10$IfCBT8lli/Wp2Vd02gNanOIfIzsQQVEzgOs6ZfhswGXk0u4BjL1La';
    v_key text := coalesce(p_site_key, '');
    v_email text := lower(btrim(coalesce(p_email, '')));
    v_fails int;
    a agents;
    v_ok boolean;
    v_token text;
    v_exp timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('jd_agent_login:' || v_key || ':' || v_email, 0));
    SELECT count(*) INTO v_fails FROM agent_login_failures f
    WHERE f.site_key = v_key AND f.email = v_email AND f.failed_at > now() - interval '15 minutes';
    IF v_fails >= 10 THEN
        RETURN QUERY SELECT NULL::text, NULL::jsonb, NULL::timestamptz, 'too_many_attempts'::text;
        RETURN;
    END IF;
    SELECT ag.* INTO a FROM agents ag JOIN sites s ON s.id = ag.site_id
    WHERE s.key = v_key AND lower(ag.email) = v_email;
    v_ok := crypt(coalesce(p_password, ''), coalesce(a.password_hash, dummy))
                = coalesce(a.password_hash, dummy)
            AND a.id IS NOT NULL AND a.disabled_at IS NULL;
    IF NOT v_ok THEN
        INSERT INTO agent_login_failures (site_key, email) VALUES (v_key, v_email);
        RETURN QUERY SELECT NULL::text, NULL::jsonb, NULL::timestamptz, 'invalid_credentials'::text;
        RETURN;
    END IF;
    DELETE FROM agent_login_failures f WHERE f.site_key = v_key AND f.email = v_email;
    v_token := jd_chat__new_token('jda_');
    v_exp := now() + greatest(coalesce(p_ttl, interval '12 hours'), interval '1 minute');
    INSERT INTO agent_sessions (agent_id, token_hash, expires_at)
    VALUES (a.id, jd_chat__hash(v_token), v_exp);
    RETURN QUERY SELECT v_token,
        jsonb_build_object('id', a.id, 'site_id', a.site_id, 'email', a.email, 'name', a.name,
                           'role', a.role),
        v_exp, NULL::text;
END $$;

-- The signed-in agent behind a cookie token, or no row (unknown, expired, revoked, disabled).
-- last_seen_at is refreshed at most once a minute.
CREATE FUNCTION jd_agent_session(p_token text)
RETURNS TABLE (agent_id bigint, site_id bigint, site_key text, email text, name text, role text,
               session_id bigint, expires_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    h bytea := jd_chat__hash(p_token);
BEGIN
    UPDATE agent_sessions s SET last_seen_at = now()
    WHERE s.token_hash = h AND s.revoked_at IS NULL AND s.expires_at > now()
      AND s.last_seen_at < now() - interval '1 minute';
    RETURN QUERY
    SELECT a.id, a.site_id, si.key, a.email, a.name, a.role, s.id, s.expires_at
    FROM agent_sessions s
    JOIN agents a ON a.id = s.agent_id
    JOIN sites si ON si.id = a.site_id
    WHERE s.token_hash = h AND s.revoked_at IS NULL AND s.expires_at > now()
      AND a.disabled_at IS NULL;
END $$;

-- Revokes the session; true when it was live. Logout, a new password and disabling notify
-- 'journeyd_agent' with the agent id, so every instance re-checks that agent's console sockets
-- (jd_agent_session) and closes those whose session ended.
CREATE FUNCTION jd_agent_logout(p_token text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_agent bigint;
BEGIN
    UPDATE agent_sessions SET revoked_at = now()
    WHERE token_hash = jd_chat__hash(p_token) AND revoked_at IS NULL
    RETURNING agent_id INTO v_agent;
    IF v_agent IS NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('journeyd_agent', v_agent::text);
    RETURN true;
END $$;

-- The site's online agents: [{"id","name"}] by name (a row refreshed within p_within).
CREATE FUNCTION jd_agents_online(p_site_id bigint, p_within interval DEFAULT interval '30 seconds')
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('id', x.id, 'name', x.name) ORDER BY x.name, x.id),
                    '[]')
    FROM (SELECT DISTINCT a.id, a.name FROM agents a JOIN agent_presence p ON p.agent_id = a.id
          WHERE a.site_id = p_site_id AND a.disabled_at IS NULL
            AND p.last_seen > now() - p_within) x
$$;

-- Heartbeat (p_online = true, every ~10 s while a console is connected to this instance) or
-- goodbye (false). Notifies 'journeyd_presence' with the site id when the agent's overall online
-- state changes, so instances push chat.presence; returns whether it changed. An agent whose
-- heartbeats stop drops out of jd_agents_online after 30 s without a notification: instances
-- refresh presence on a timer too (docs/chat.md).
CREATE FUNCTION jd_agent_presence(p_agent_id bigint, p_instance text, p_online boolean)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_site bigint;
    was boolean;
    now_on boolean;
BEGIN
    SELECT site_id INTO v_site FROM agents WHERE id = p_agent_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('jd_agent_presence:' || p_agent_id, 0));
    SELECT EXISTS (SELECT 1 FROM agent_presence
                   WHERE agent_id = p_agent_id AND last_seen > now() - interval '30 seconds')
    INTO was;
    IF p_online THEN
        INSERT INTO agent_presence (agent_id, instance) VALUES (p_agent_id, p_instance)
        ON CONFLICT (agent_id, instance) DO UPDATE SET last_seen = now();
    ELSE
        DELETE FROM agent_presence WHERE agent_id = p_agent_id AND instance = p_instance;
    END IF;
    SELECT EXISTS (SELECT 1 FROM agent_presence p JOIN agents a ON a.id = p.agent_id
                   WHERE p.agent_id = p_agent_id AND a.disabled_at IS NULL
                     AND p.last_seen > now() - interval '30 seconds')
    INTO now_on;
    IF was IS DISTINCT FROM now_on THEN
        PERFORM pg_notify('journeyd_presence', v_site::text);
        RETURN true;
    END IF;
    RETURN false;
END $$;

-- An instance starting up (or shutting down) clears what a previous run of it left behind.
CREATE FUNCTION jd_presence_clear_instance(p_instance text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    r record;
BEGIN
    FOR r IN SELECT agent_id FROM agent_presence WHERE instance = p_instance LOOP
        PERFORM jd_agent_presence(r.agent_id, p_instance, false);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

CREATE FUNCTION jd_canned_list(p_agent_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('id', c.id, 'shortcut', c.shortcut,
                                                 'title', c.title, 'body', c.body)
                              ORDER BY c.shortcut), '[]')
    FROM canned_responses c JOIN agents a ON a.site_id = c.site_id
    WHERE a.id = p_agent_id AND a.disabled_at IS NULL
$$;

-- Creates or replaces a canned response (site admins only).
CREATE FUNCTION jd_canned_save(p_agent_id bigint, p_shortcut text, p_title text, p_body text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a agents := jd_chat__agent(p_agent_id);
    r canned_responses;
BEGIN
    IF a.role <> 'admin' THEN
        PERFORM jd_chat__fail(403, 'forbidden', 'only site admins edit canned responses');
    END IF;
    INSERT INTO canned_responses (site_id, shortcut, title, body, created_by)
    VALUES (a.site_id, p_shortcut, p_title, p_body, a.id)
    ON CONFLICT (site_id, shortcut) DO UPDATE
        SET title = EXCLUDED.title, body = EXCLUDED.body, updated_at = now()
    RETURNING * INTO r;
    RETURN jsonb_build_object('id', r.id, 'shortcut', r.shortcut, 'title', r.title, 'body', r.body);
END $$;

CREATE FUNCTION jd_canned_delete(p_agent_id bigint, p_shortcut text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    a agents := jd_chat__agent(p_agent_id);
BEGIN
    IF a.role <> 'admin' THEN
        PERFORM jd_chat__fail(403, 'forbidden', 'only site admins edit canned responses');
    END IF;
    DELETE FROM canned_responses WHERE site_id = a.site_id AND shortcut = p_shortcut;
    RETURN FOUND;
END $$;

-- ===========================================================================================
-- 4. Conversations
-- ===========================================================================================

-- Opens a conversation for a visitor and returns its id and the visitor's token (shown once;
-- only sha256(token) is stored). p_client_id is the chat.open frame's id: a resent open finds the
-- same conversation (same site and respondent) and, since the first token cannot be recovered
-- from its hash, gets a fresh token that replaces it (created = false).
CREATE FUNCTION jd_chat_open(p_site_id bigint, p_respondent uuid, p_session uuid, p_email text,
                             p_page text, p_stage_id bigint, p_touchpoint_id bigint,
                             p_client_id uuid DEFAULT NULL)
RETURNS TABLE (conversation_id uuid, token text, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_token text := jd_chat__new_token('jdc_');
    v_id uuid;
    v_email text := nullif(btrim(coalesce(p_email, '')), '');
BEGIN
    IF v_email IS NOT NULL AND (length(v_email) > 254 OR v_email !~ '^[^@[:space:]]+@[^@[:space:]]+$') THEN
        PERFORM jd_chat__fail(400, 'bad_field', 'email is not an e-mail address', 'email');
    END IF;
    FOR attempt IN 1..2 LOOP
        IF p_client_id IS NOT NULL THEN
            UPDATE conversations c SET token_hash = jd_chat__hash(v_token), updated_at = now(),
                                       visitor_email = coalesce(v_email, c.visitor_email)
            WHERE c.site_id = p_site_id AND c.open_client_id = p_client_id
              AND c.respondent_id IS NOT DISTINCT FROM p_respondent
            RETURNING c.id INTO v_id;
            IF FOUND THEN
                RETURN QUERY SELECT v_id, v_token, false;
                RETURN;
            END IF;
        END IF;
        INSERT INTO conversations AS c (site_id, token_hash, open_client_id, respondent_id,
                                        session_id, visitor_email, page_url, stage_id, touchpoint_id)
        VALUES (p_site_id, jd_chat__hash(v_token), p_client_id, p_respondent, p_session, v_email,
                left(coalesce(p_page, ''), 2048), p_stage_id, p_touchpoint_id)
        ON CONFLICT (site_id, open_client_id) DO NOTHING
        RETURNING c.id INTO v_id;
        IF FOUND THEN
            PERFORM jd_chat__notify(v_id);   -- consoles learn about the new conversation
            RETURN QUERY SELECT v_id, v_token, true;
            RETURN;
        END IF;
        -- A concurrent open with the same client id won: loop once to take it over.
    END LOOP;
    PERFORM jd_chat__fail(409, 'conflict', 'this open id belongs to another visitor', 'id');
END $$;

-- Sets the visitor's e-mail (offline form). Notifies so consoles refresh the conversation.
CREATE FUNCTION jd_chat_set_email(p_conversation uuid, p_email text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_email IS NULL OR length(p_email) > 254 OR p_email !~ '^[^@[:space:]]+@[^@[:space:]]+$' THEN
        PERFORM jd_chat__fail(400, 'bad_field', 'email is not an e-mail address', 'email');
    END IF;
    UPDATE conversations SET visitor_email = btrim(p_email), updated_at = now()
    WHERE id = p_conversation;
    IF NOT FOUND THEN
        PERFORM jd_chat__fail(404, 'not_found', 'no such conversation', 'conversation');
    END IF;
    PERFORM jd_chat__notify(p_conversation);
END $$;

-- Inserts a batch of messages from any number of conversations: the chat counterpart of the
-- ingest store's json_to_recordset inserts. p is a JSON array of
--   {"conversation_id": uuid, "site_id": int, "client_id": uuid, "sender": "visitor"|"agent"|
--    "system" (default visitor), "agent_id": int (agents), "kind": "text"|"note"|"offline"
--    (default text), "body": text, "page_url": text, "stage_id": int, "touchpoint_id": int,
--    "client_ts": timestamptz}
-- and the result maps every client_id of the batch to its seq: {"<client_id>": seq, ...}, for new
-- messages and for duplicates alike (already stored, or repeated inside the array: the first
-- occurrence wins), so a resend is acked with the seq it got the first time and makes no row.
--
-- How seq stays gapless and ordered across instances:
--   1. the touched conversation rows are locked in id order (no deadlock between two batches);
--      a concurrent batch touching one of them makes this one wait until it has committed;
--   2. the next statement takes a new snapshot, so it sees every message committed before the
--      lock was granted: duplicates are found there, never by a failing insert;
--   3. each conversation's last_seq is bumped by its count of new messages and those messages
--      get last_seq+1 .. last_seq+n in array order.
-- The lock is held until COMMIT, so messages of one conversation commit in seq order: a reader
-- that sees seq n has seen every seq below it (docs/chat.md, "ordering").
-- Status: an agent's text reply makes the conversation open and assigns that agent when nobody
-- is assigned; a visitor message reopens a closed conversation as waiting. Notes change neither.
-- Finally one pg_notify('journeyd_chat', id) per conversation that got a new message.
-- Errors are class 22/23 (bad uuid, missing field, unknown conversation, site mismatch, body too
-- long...), so the ingest store's row-by-row retry isolates a bad record.
CREATE FUNCTION jd_chat_insert(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    wanted int;
    locked int;
    result jsonb;
    touched uuid[];
BEGIN
    IF jsonb_typeof(p) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'jd_chat_insert expects a JSON array';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p) e
               WHERE jsonb_typeof(e) <> 'object'
                  OR coalesce(e ->> 'conversation_id', '') = ''
                  OR coalesce(e ->> 'client_id', '') = '') THEN
        RAISE EXCEPTION USING ERRCODE = '23502',
            MESSAGE = 'every message needs an object with conversation_id and client_id';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p) e
               WHERE e ->> 'sender' = 'agent' AND e ->> 'agent_id' IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'an agent message needs agent_id';
    END IF;

    -- 1. Lock.
    SELECT count(DISTINCT (e ->> 'conversation_id')::uuid) INTO wanted FROM jsonb_array_elements(p) e;
    PERFORM 1 FROM conversations c
    WHERE c.id IN (SELECT (e ->> 'conversation_id')::uuid FROM jsonb_array_elements(p) e)
    ORDER BY c.id
    FOR NO KEY UPDATE;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked <> wanted THEN
        RAISE EXCEPTION USING ERRCODE = '23503', MESSAGE = 'a message names an unknown conversation';
    END IF;

    -- 2 and 3. Dedupe, number, bump, insert.
    WITH input AS (
        SELECT r.*, e.n
        FROM jsonb_array_elements(p) WITH ORDINALITY AS e (j, n),
             jsonb_to_record(e.j) AS r (conversation_id uuid, site_id bigint, client_id uuid,
                                        sender text, agent_id bigint, kind text, body text,
                                        page_url text, stage_id bigint, touchpoint_id bigint,
                                        client_ts timestamptz)
    ), firsts AS (
        SELECT DISTINCT ON (i.conversation_id, i.client_id) i.*
        FROM input i ORDER BY i.conversation_id, i.client_id, i.n
    ), known AS (
        SELECT f.conversation_id, f.client_id, m.seq
        FROM firsts f JOIN messages m ON m.conversation_id = f.conversation_id
                                     AND m.client_id = f.client_id
    ), fresh AS (
        SELECT f.*, row_number() OVER (PARTITION BY f.conversation_id ORDER BY f.n) AS k
        FROM firsts f
        WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.conversation_id = f.conversation_id
                                                 AND k.client_id = f.client_id)
    ), counts AS (
        SELECT f.conversation_id, count(*) AS cnt,
               bool_or(coalesce(f.sender, 'visitor') = 'visitor') AS visitor_wrote,
               (array_agg(f.agent_id ORDER BY f.n)
                    FILTER (WHERE f.sender = 'agent' AND coalesce(f.kind, 'text') = 'text'))[1]
                   AS replying_agent
        FROM fresh f GROUP BY f.conversation_id
    ), next AS (
        SELECT c.id, k.cnt, k.replying_agent,
               CASE WHEN k.replying_agent IS NOT NULL THEN 'open'
                    WHEN k.visitor_wrote AND c.status = 'closed' THEN 'waiting'
                    ELSE c.status END AS status
        FROM conversations c JOIN counts k ON k.conversation_id = c.id
    ), bump AS (
        UPDATE conversations c
        SET last_seq = c.last_seq + x.cnt,
            last_message_at = now(),
            updated_at = now(),
            status = x.status,
            closed_at = CASE WHEN x.status = 'closed' THEN c.closed_at END,
            closed_by = CASE WHEN x.status = 'closed' THEN c.closed_by END,
            assigned_agent_id = coalesce(c.assigned_agent_id, x.replying_agent)
        FROM next x
        WHERE c.id = x.id
        RETURNING c.id, c.last_seq - x.cnt AS base
    ), ins AS (
        INSERT INTO messages (conversation_id, site_id, seq, client_id, sender, agent_id, kind,
                              body, page_url, stage_id, touchpoint_id, client_ts)
        SELECT f.conversation_id, f.site_id, b.base + f.k, f.client_id,
               coalesce(f.sender, 'visitor'), f.agent_id, coalesce(f.kind, 'text'), f.body,
               f.page_url, f.stage_id, f.touchpoint_id, f.client_ts
        FROM fresh f JOIN bump b ON b.id = f.conversation_id
        RETURNING conversation_id, client_id, seq
    ), acks AS (
        SELECT client_id, seq FROM known
        UNION ALL
        SELECT client_id, seq FROM ins
    )
    SELECT coalesce((SELECT jsonb_object_agg(a.client_id::text, a.seq) FROM acks a), '{}'),
           (SELECT array_agg(DISTINCT i.conversation_id) FROM ins i)
    INTO result, touched;

    PERFORM jd_chat__notify(t) FROM unnest(touched) AS t ORDER BY t;
    RETURN result;
END $$;

-- The conversation's live state, as instances compare it with what they last pushed
-- (docs/chat.md, "waking up"). NULL when the conversation does not exist (erased).
CREATE FUNCTION jd_chat_state(p_conversation uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'conversation', c.id,
        'site_id', c.site_id,
        'status', c.status,
        'last_seq', c.last_seq,
        'assigned_agent', CASE WHEN aa.id IS NOT NULL THEN
                              jsonb_build_object('id', aa.id, 'name', aa.name) END,
        'visitor_typing', coalesce(c.visitor_typing_until > now(), false),
        'agent_typing', CASE WHEN c.agent_typing_until > now() THEN
                            jsonb_build_object('id', ta.id, 'name', ta.name) END,
        'receipts', jsonb_build_object(
            'visitor_delivered_seq', c.visitor_delivered_seq,
            'visitor_read_seq', c.visitor_read_seq,
            'agent_delivered_seq', c.agent_delivered_seq,
            'agent_read_seq', c.agent_read_seq),
        'codes_version', c.codes_version,
        'updated_at', jd_chat__ts(c.updated_at))
    FROM conversations c
    LEFT JOIN agents aa ON aa.id = c.assigned_agent_id
    LEFT JOIN agents ta ON ta.id = c.agent_typing_id
    WHERE c.id = p_conversation
$$;

-- Messages with seq > p_after_seq in seq order, at most p_limit. Visitors never see notes.
-- This does no access check: the daemon calls it only for a connection already authorised for
-- the conversation (a visitor through chat.open/jd_chat_resume, an agent of the same site
-- through jd_agent_conversation).
CREATE FUNCTION jd_chat_fetch(p_conversation uuid, p_after_seq bigint, p_for_agent boolean,
                              p_limit int DEFAULT 500)
RETURNS SETOF jsonb LANGUAGE sql STABLE AS $$
    SELECT jd_chat__message_json(m, p_for_agent)
    FROM messages m
    WHERE m.conversation_id = p_conversation AND m.seq > coalesce(p_after_seq, 0)
      AND (p_for_agent OR m.kind <> 'note')
    ORDER BY m.seq
    LIMIT greatest(coalesce(p_limit, 500), 1)
$$;

-- A visitor's reconnect: the messages after p_after_seq when p_token is the conversation's token
-- (and p_site_id, when given, its site). Anything else raises JD403 'chat_forbidden', the same
-- for a wrong token and for an unknown conversation.
CREATE FUNCTION jd_chat_resume(p_conversation uuid, p_token text, p_after_seq bigint,
                               p_site_id bigint DEFAULT NULL)
RETURNS SETOF jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM conversations c
                   WHERE c.id = p_conversation AND c.token_hash = jd_chat__hash(p_token)
                     AND (p_site_id IS NULL OR c.site_id = p_site_id)) THEN
        PERFORM jd_chat__fail(403, 'chat_forbidden', 'unknown conversation or wrong token',
                              'token');
    END IF;
    RETURN QUERY SELECT * FROM jd_chat_fetch(p_conversation, p_after_seq, false, 1000);
END $$;

-- What an instance calls after a wake-up, for many subscriptions at once:
--   p = [{"conversation": uuid, "after_seq": n, "for_agent": bool, "limit": n (default 200),
--         "messages": false (state only, e.g. for inbox updates; default true)}]
-- returns, in the same order,
--   [{"conversation": uuid, "state": jd_chat_state(...) or null, "messages": [...],
--     "more": true when the limit cut the list (poll again from the last seq)}]
-- state null means the conversation is gone (erased): drop the subscription.
CREATE FUNCTION jd_chat_poll(p jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'conversation', q.conversation,
               'state', jd_chat_state(q.conversation),
               'messages', coalesce(ms.list, '[]'),
               'more', coalesce(ms.n > q.lim, false)) ORDER BY q.n), '[]')
    FROM (SELECT (e.j ->> 'conversation')::uuid AS conversation,
                 coalesce((e.j ->> 'after_seq')::bigint, 0) AS after_seq,
                 coalesce((e.j ->> 'for_agent')::boolean, false) AS for_agent,
                 least(greatest(coalesce((e.j ->> 'limit')::int, 200), 1), 1000) AS lim,
                 coalesce((e.j ->> 'messages')::boolean, true) AS want, e.n
          FROM jsonb_array_elements(p) WITH ORDINALITY AS e (j, n)) q
    LEFT JOIN LATERAL (
        SELECT jsonb_agg(x.j ORDER BY x.seq) FILTER (WHERE x.rn <= q.lim) AS list, count(*) AS n
        FROM (SELECT m.seq, jd_chat__message_json(m, q.for_agent) AS j,
                     row_number() OVER (ORDER BY m.seq) AS rn
              FROM messages m
              WHERE q.want AND m.conversation_id = q.conversation AND m.seq > q.after_seq
                AND (q.for_agent OR m.kind <> 'note')
              ORDER BY m.seq
              LIMIT q.lim + 1) x
    ) ms ON true
$$;

-- Delivered/read receipts. p_by = 'visitor' marks the agents' side (agent and system messages,
-- never notes) up to p_upto_seq; p_by = 'agent' marks the visitor's messages. Read implies
-- delivered. Sets delivered_at/read_at on the messages, advances the watermark on the
-- conversation (never backwards, never past last_seq), and notifies when it moved. Returns
-- {"conversation","by","delivered_seq","read_seq","changed"}.
CREATE FUNCTION jd_chat_mark(p_conversation uuid, p_upto_seq bigint, p_what text, p_by text,
                             p_agent_id bigint DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c conversations;
    v_upto bigint;
    old_d bigint;
    old_r bigint;
    new_d bigint;
    new_r bigint;
BEGIN
    IF p_what IS NULL OR p_what NOT IN ('delivered', 'read') THEN
        PERFORM jd_chat__fail(400, 'invalid_value', 'what must be delivered or read', 'what');
    END IF;
    IF p_by IS NULL OR p_by NOT IN ('visitor', 'agent') THEN
        PERFORM jd_chat__fail(400, 'invalid_value', 'by must be visitor or agent', 'by');
    END IF;
    IF p_by = 'agent' AND p_agent_id IS NULL THEN
        PERFORM jd_chat__fail(400, 'missing_field', 'an agent receipt needs agent_id', 'agent');
    END IF;
    c := jd_chat__conversation(p_conversation, CASE WHEN p_by = 'agent' THEN p_agent_id END);
    v_upto := least(greatest(coalesce(p_upto_seq, 0), 0), c.last_seq);
    IF p_by = 'visitor' THEN
        old_d := c.visitor_delivered_seq;
        old_r := c.visitor_read_seq;
    ELSE
        old_d := c.agent_delivered_seq;
        old_r := c.agent_read_seq;
    END IF;
    new_d := greatest(old_d, v_upto);
    new_r := CASE WHEN p_what = 'read' THEN greatest(old_r, v_upto) ELSE old_r END;
    IF new_d = old_d AND new_r = old_r THEN
        RETURN jsonb_build_object('conversation', c.id, 'by', p_by, 'delivered_seq', old_d,
                                  'read_seq', old_r, 'changed', false);
    END IF;
    UPDATE messages m
    SET delivered_at = coalesce(m.delivered_at, now()),
        read_at = CASE WHEN m.seq <= new_r THEN coalesce(m.read_at, now()) ELSE m.read_at END
    WHERE m.conversation_id = c.id AND m.seq > least(old_d, old_r) AND m.seq <= new_d
      AND m.kind <> 'note'
      AND CASE WHEN p_by = 'visitor' THEN m.sender <> 'visitor' ELSE m.sender = 'visitor' END
      AND (m.delivered_at IS NULL OR (m.seq <= new_r AND m.read_at IS NULL));
    IF p_by = 'visitor' THEN
        UPDATE conversations SET visitor_delivered_seq = new_d, visitor_read_seq = new_r
        WHERE id = c.id;
    ELSE
        UPDATE conversations SET agent_delivered_seq = new_d, agent_read_seq = new_r
        WHERE id = c.id;
    END IF;
    PERFORM jd_chat__notify(c.id);
    RETURN jsonb_build_object('conversation', c.id, 'by', p_by, 'delivered_seq', new_d,
                              'read_seq', new_r, 'changed', true);
END $$;

-- Typing indicator of one side. On = typing for the next 6 seconds (clients resend while
-- typing); off = stopped. Notifies when the shown state changes, and while typing continues at
-- most about every 3 seconds (when less than 3 s of the previous 6 s window remain), so a
-- stream of keystrokes does not become a stream of notifications. Returns whether it notified.
CREATE FUNCTION jd_chat_typing(p_conversation uuid, p_who text, p_on boolean,
                               p_agent_id bigint DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    c conversations;
    old_until timestamptz;
    new_until timestamptz := CASE WHEN p_on THEN now() + interval '6 seconds' END;
    was_on boolean;
    notify boolean;
BEGIN
    IF p_who IS NULL OR p_who NOT IN ('visitor', 'agent') THEN
        PERFORM jd_chat__fail(400, 'invalid_value', 'who must be visitor or agent', 'who');
    END IF;
    IF p_who = 'agent' AND p_agent_id IS NULL THEN
        PERFORM jd_chat__fail(400, 'missing_field', 'an agent typing needs agent_id', 'agent');
    END IF;
    c := jd_chat__conversation(p_conversation, CASE WHEN p_who = 'agent' THEN p_agent_id END);
    old_until := CASE WHEN p_who = 'visitor' THEN c.visitor_typing_until ELSE c.agent_typing_until END;
    was_on := coalesce(old_until > now(), false);
    notify := was_on IS DISTINCT FROM coalesce(p_on, false)
              OR (p_on AND old_until < now() + interval '3 seconds')
              OR (p_who = 'agent' AND p_on AND c.agent_typing_id IS DISTINCT FROM p_agent_id);
    IF p_who = 'visitor' THEN
        UPDATE conversations SET visitor_typing_until = new_until WHERE id = c.id;
    ELSE
        UPDATE conversations SET agent_typing_until = new_until,
                                 agent_typing_id = CASE WHEN p_on THEN p_agent_id ELSE agent_typing_id END
        WHERE id = c.id;
    END IF;
    IF notify THEN
        PERFORM jd_chat__notify(c.id);
    END IF;
    RETURN notify;
END $$;

-- Closes a conversation: a system message goes into the log (so the close is ordered with the
-- messages and every client sees it), then the status. p_agent_id NULL = the visitor ended it.
-- Idempotent: closing a closed conversation changes nothing. Returns
-- {"conversation","status","seq" (the system message, null when already closed),"changed"}.
CREATE FUNCTION jd_chat_close(p_conversation uuid, p_agent_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c conversations := jd_chat__conversation(p_conversation, p_agent_id);
    v_name text;
    v_client uuid := gen_random_uuid();
    acks jsonb;
BEGIN
    IF c.status = 'closed' THEN
        RETURN jsonb_build_object('conversation', c.id, 'status', 'closed', 'seq', NULL,
                                  'changed', false);
    END IF;
    SELECT name INTO v_name FROM agents WHERE id = p_agent_id;
    acks := jd_chat_insert(jsonb_build_array(jsonb_build_object(
        'conversation_id', c.id, 'site_id', c.site_id, 'client_id', v_client, 'sender', 'system',
        'body', CASE WHEN p_agent_id IS NULL THEN 'The visitor ended the conversation.'
                     ELSE format('%s closed the conversation.', v_name) END)));
    UPDATE conversations
    SET status = 'closed', closed_at = now(), closed_by = p_agent_id, updated_at = now(),
        visitor_typing_until = NULL, agent_typing_until = NULL
    WHERE id = c.id;
    PERFORM jd_chat__notify(c.id);
    RETURN jsonb_build_object('conversation', c.id, 'status', 'closed',
                              'seq', (acks ->> v_client::text)::bigint, 'changed', true);
END $$;

-- The end-of-chat rating (emotion 1..5 and/or CSAT score 1..5, optional comment), stored as an
-- answer with source 'chat' for the chat's stage and touchpoint: those of the latest visitor
-- message that has a stage, else the conversation's opening context. The map is that stage's,
-- else the site's only map. Idempotent by (site_id, client_id) like every answer.
-- Returns {"stored": true|false (already stored), "answer_id"}.
CREATE FUNCTION jd_chat_rate(p_conversation uuid, p_client_id uuid, p_emotion int, p_score int,
                             p_text text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c conversations := jd_chat__conversation(p_conversation, NULL, false);
    v_stage bigint;
    v_touch bigint;
    v_map bigint;
    v_persona bigint;
    v_id bigint;
BEGIN
    IF p_emotion IS NULL AND p_score IS NULL THEN
        PERFORM jd_chat__fail(400, 'missing_field', 'a rating needs emotion or score', 'emotion');
    END IF;
    IF p_emotion NOT BETWEEN 1 AND 5 THEN
        PERFORM jd_chat__fail(400, 'out_of_range', 'emotion must be 1..5', 'emotion');
    END IF;
    IF p_score NOT BETWEEN 1 AND 5 THEN
        PERFORM jd_chat__fail(400, 'out_of_range', 'score must be 1..5', 'score');
    END IF;
    SELECT m.stage_id, m.touchpoint_id INTO v_stage, v_touch FROM messages m
    WHERE m.conversation_id = c.id AND m.sender = 'visitor' AND m.stage_id IS NOT NULL
    ORDER BY m.seq DESC LIMIT 1;
    IF v_stage IS NULL THEN
        v_stage := c.stage_id;
        v_touch := c.touchpoint_id;
    END IF;
    SELECT map_id INTO v_map FROM stages WHERE id = v_stage;
    IF v_map IS NULL THEN
        SELECT min(id) INTO v_map FROM maps WHERE site_id = c.site_id HAVING count(*) = 1;
    END IF;
    IF v_map IS NULL THEN
        PERFORM jd_chat__fail(409, 'no_map', 'the chat has no stage and its site has several maps',
                              'stage');
    END IF;
    SELECT se.persona_id INTO v_persona FROM sessions se JOIN personas pe ON pe.id = se.persona_id
    WHERE se.id = c.session_id AND pe.map_id = v_map;
    INSERT INTO answers (site_id, map_id, client_id, source, session_id, respondent_id, persona_id,
                         stage_id, touchpoint_id, emotion, score, thought, value)
    VALUES (c.site_id, v_map, p_client_id, 'chat', c.session_id, c.respondent_id, v_persona,
            v_stage, CASE WHEN v_touch IN (SELECT id FROM touchpoints WHERE map_id = v_map) THEN v_touch END,
            p_emotion, p_score, nullif(btrim(coalesce(p_text, '')), ''),
            jsonb_strip_nulls(jsonb_build_object('conversation', c.id, 'emotion', p_emotion,
                                                 'score', p_score)))
    ON CONFLICT (site_id, client_id) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT id INTO v_id FROM answers WHERE site_id = c.site_id AND client_id = p_client_id;
        RETURN jsonb_build_object('stored', false, 'answer_id', v_id);
    END IF;
    RETURN jsonb_build_object('stored', true, 'answer_id', v_id);
END $$;

-- ===========================================================================================
-- 5. Agent inbox and conversation detail
-- ===========================================================================================

-- A conversation as the console lists it: status, assignment, unread count, last message,
-- the visitor's page context (latest visitor message with a page, else where the chat opened)
-- and journey path (the last 20 touch events of the chat's session, oldest first).
CREATE FUNCTION jd_chat__summary(c conversations) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'conversation', c.id,
        'status', c.status,
        'created_at', jd_chat__ts(c.created_at),
        'updated_at', jd_chat__ts(c.updated_at),
        'last_message_at', jd_chat__ts(c.last_message_at),
        'closed_at', jd_chat__ts(c.closed_at),
        'last_seq', c.last_seq,
        'assigned_agent', (SELECT jsonb_build_object('id', a.id, 'name', a.name)
                           FROM agents a WHERE a.id = c.assigned_agent_id),
        'visitor', jsonb_build_object('respondent', c.respondent_id, 'session', c.session_id,
                                      'email', c.visitor_email),
        'unread', (SELECT count(*) FROM messages m
                   WHERE m.conversation_id = c.id AND m.sender = 'visitor'
                     AND m.seq > c.agent_read_seq),
        'last_message', (SELECT jsonb_build_object('seq', m.seq, 'sender', m.sender, 'kind', m.kind,
                                                   'body', left(m.body, 200),
                                                   'at', jd_chat__ts(m.created_at))
                         FROM messages m WHERE m.conversation_id = c.id
                         ORDER BY m.seq DESC LIMIT 1),
        'context', (SELECT jsonb_build_object(
                        'page', ctx.page_url,
                        'stage', (SELECT jsonb_build_object('id', s.id, 'slug', s.slug, 'name', s.name)
                                  FROM stages s WHERE s.id = ctx.stage_id),
                        'touchpoint', (SELECT jsonb_build_object('id', t.id, 'slug', t.slug, 'name', t.name)
                                       FROM touchpoints t WHERE t.id = ctx.touchpoint_id))
                    FROM (SELECT * FROM (
                              SELECT m.page_url, m.stage_id, m.touchpoint_id, 1 AS pri, m.seq
                              FROM messages m
                              WHERE m.conversation_id = c.id AND m.sender = 'visitor'
                                AND m.page_url IS NOT NULL
                              ORDER BY m.seq DESC LIMIT 1) latest
                          UNION ALL
                          SELECT c.page_url, c.stage_id, c.touchpoint_id, 2, 0
                          ORDER BY pri LIMIT 1) ctx),
        'journey', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'kind', t.kind, 'name', t.name, 'url', t.url,
                                'stage', s.slug, 'touchpoint', tp.slug,
                                'at', jd_chat__ts(t.created_at)) ORDER BY t.created_at, t.id), '[]')
                    FROM (SELECT * FROM touch_events te
                          WHERE te.session_id = c.session_id
                          ORDER BY te.created_at DESC, te.id DESC LIMIT 20) t
                    LEFT JOIN stages s ON s.id = t.stage_id
                    LEFT JOIN touchpoints tp ON tp.id = t.touchpoint_id))
$$;

-- The agent's inbox: conversations of the agent's site with p_status (open, waiting, closed; NULL
-- = open and waiting), most recent activity first. Returns {"items","total","limit","offset"}.
CREATE FUNCTION jd_agent_inbox(p_agent_id bigint, p_status text DEFAULT NULL, p_limit int DEFAULT 50,
                               p_offset int DEFAULT 0)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    a agents := jd_chat__agent(p_agent_id);
    v_limit int := least(greatest(coalesce(p_limit, 50), 1), 200);
    v_offset int := greatest(coalesce(p_offset, 0), 0);
    v_statuses text[];
    items jsonb;
    total bigint;
BEGIN
    IF p_status IS NOT NULL AND p_status NOT IN ('open', 'waiting', 'closed') THEN
        PERFORM jd_chat__fail(400, 'invalid_value', 'status must be open, waiting or closed',
                              'status');
    END IF;
    v_statuses := CASE WHEN p_status IS NULL THEN ARRAY['open', 'waiting'] ELSE ARRAY[p_status] END;
    SELECT count(*) INTO total FROM conversations c
    WHERE c.site_id = a.site_id AND c.status = ANY (v_statuses);
    SELECT coalesce(jsonb_agg(jd_chat__summary(p.c) ORDER BY p.ord), '[]') INTO items
    FROM (SELECT c AS c, row_number() OVER (ORDER BY coalesce(c.last_message_at, c.created_at) DESC,
                                                    c.id) AS ord
          FROM conversations c
          WHERE c.site_id = a.site_id AND c.status = ANY (v_statuses)
          ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.id
          LIMIT v_limit OFFSET v_offset) p;
    RETURN jsonb_build_object('items', items, 'total', total, 'limit', v_limit, 'offset', v_offset);
END $$;

-- One conversation for an agent of its site (404 otherwise): the summary, the live state and the
-- current codes. The daemon calls this before subscribing an agent to a conversation.
CREATE FUNCTION jd_agent_conversation(p_agent_id bigint, p_conversation uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    c conversations := jd_chat__conversation(p_conversation, p_agent_id, false);
BEGIN
    RETURN jd_chat__summary(c)
        || jsonb_build_object('state', jd_chat_state(c.id),
                              'codes', jd_chat_codes(c.id, false));
END $$;

-- ===========================================================================================
-- 6. Research coding
-- ===========================================================================================

CREATE FUNCTION jd_chat__code_json(mc message_codes) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', mc.id,
        'message_id', mc.message_id,
        'conversation', m.conversation_id,
        'seq', m.seq,
        'map', mp.slug,
        'span', CASE WHEN mc.span_start IS NOT NULL THEN jsonb_build_array(mc.span_start, mc.span_end) END,
        'text', CASE WHEN mc.span_start IS NULL THEN m.body
                     ELSE substr(m.body, mc.span_start + 1, mc.span_end - mc.span_start) END,
        'emotion', mc.emotion,
        'obstacles', (SELECT coalesce(jsonb_agg(o.slug ORDER BY o.slug), '[]')
                      FROM obstacles o WHERE o.id = ANY (mc.obstacle_ids)),
        'persona', pe.slug,
        'stage', st.slug,
        'touchpoint', tp.slug,
        'memo', mc.memo,
        'coder', CASE WHEN a.id IS NOT NULL THEN jsonb_build_object('id', a.id, 'name', a.name) END,
        'client_id', mc.client_id,
        'created_at', jd_chat__ts(mc.created_at),
        'superseded_at', jd_chat__ts(mc.superseded_at),
        'superseded_by', mc.superseded_by)
    FROM messages m
    JOIN maps mp ON mp.id = mc.map_id
    LEFT JOIN personas pe ON pe.id = mc.persona_id
    LEFT JOIN stages st ON st.id = mc.stage_id
    LEFT JOIN touchpoints tp ON tp.id = mc.touchpoint_id
    LEFT JOIN agents a ON a.id = mc.coder_id
    WHERE m.id = mc.message_id
$$;

-- The codes of a conversation's messages (current ones, or the whole history), by seq then id.
CREATE FUNCTION jd_chat_codes(p_conversation uuid, p_history boolean DEFAULT false)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jd_chat__code_json(mc) ORDER BY m.seq, mc.id), '[]')
    FROM message_codes mc JOIN messages m ON m.id = mc.message_id
    WHERE m.conversation_id = p_conversation AND (p_history OR mc.superseded_at IS NULL)
$$;

-- Validates and inserts one code (shared by jd_code_message and jd_code_revise). The map is
-- p_map (a slug of the site's maps), else the map of the message's stage, else the site's only
-- map. Slugs must exist in that map; the span must lie within the body (code points); at least
-- one of emotion, obstacles, persona, stage, touchpoint is required; only visitor messages are
-- coded (they are the customer's voice). Bumps the conversation's codes_version and notifies.
CREATE FUNCTION jd_chat__code_insert(p_agent_id bigint, p_message_id bigint, p_span_start int,
                                     p_span_end int, p_emotion int, p_obstacles text[],
                                     p_stage text, p_touchpoint text, p_persona text,
                                     p_map text, p_memo text, p_map_id bigint DEFAULT NULL,
                                     p_client_id uuid DEFAULT NULL)
RETURNS message_codes LANGUAGE plpgsql AS $$
DECLARE
    a agents := jd_chat__agent(p_agent_id);
    m messages;
    c conversations;
    v_map bigint := p_map_id;
    v_stage bigint;
    v_touch bigint;
    v_persona bigint;
    v_obstacles bigint[] := '{}';
    v_unknown text;
    r message_codes;
BEGIN
    SELECT * INTO m FROM messages WHERE id = p_message_id;
    IF NOT FOUND OR m.site_id <> a.site_id THEN
        PERFORM jd_chat__fail(404, 'not_found', 'no such message', 'message');
    END IF;
    IF m.sender <> 'visitor' THEN
        PERFORM jd_chat__fail(409, 'not_codable', 'only visitor messages are coded', 'message');
    END IF;
    IF (p_span_start IS NULL) <> (p_span_end IS NULL)
       OR (p_span_start IS NOT NULL
           AND NOT (p_span_start >= 0 AND p_span_end > p_span_start AND p_span_end <= length(m.body))) THEN
        PERFORM jd_chat__fail(400, 'bad_span',
                              format('the span must satisfy 0 <= start < end <= %s', length(m.body)),
                              'span');
    END IF;
    IF p_emotion NOT BETWEEN 1 AND 5 THEN
        PERFORM jd_chat__fail(400, 'out_of_range', 'emotion must be 1..5', 'emotion');
    END IF;
    IF v_map IS NULL AND p_map IS NOT NULL THEN
        SELECT id INTO v_map FROM maps WHERE site_id = m.site_id AND slug = p_map;
        IF v_map IS NULL THEN
            PERFORM jd_chat__fail(400, 'unknown_map', format('no map "%s" on this site', p_map), 'map');
        END IF;
    END IF;
    IF v_map IS NULL THEN
        SELECT map_id INTO v_map FROM stages WHERE id = m.stage_id;
    END IF;
    IF v_map IS NULL THEN
        SELECT min(id) INTO v_map FROM maps WHERE site_id = m.site_id HAVING count(*) = 1;
    END IF;
    IF v_map IS NULL THEN
        PERFORM jd_chat__fail(400, 'map_required', 'name the map: this site has several', 'map');
    END IF;
    IF p_stage IS NOT NULL THEN
        SELECT id INTO v_stage FROM stages WHERE map_id = v_map AND slug = p_stage;
        IF v_stage IS NULL THEN
            PERFORM jd_chat__fail(400, 'unknown_stage', format('no stage "%s" in the map', p_stage), 'stage');
        END IF;
    END IF;
    IF p_touchpoint IS NOT NULL THEN
        SELECT id INTO v_touch FROM touchpoints WHERE map_id = v_map AND slug = p_touchpoint;
        IF v_touch IS NULL THEN
            PERFORM jd_chat__fail(400, 'unknown_touchpoint',
                                  format('no touchpoint "%s" in the map', p_touchpoint), 'touchpoint');
        END IF;
    END IF;
    IF p_persona IS NOT NULL THEN
        SELECT id INTO v_persona FROM personas WHERE map_id = v_map AND slug = p_persona;
        IF v_persona IS NULL THEN
            PERFORM jd_chat__fail(400, 'unknown_persona',
                                  format('no persona "%s" in the map', p_persona), 'persona');
        END IF;
    END IF;
    IF cardinality(p_obstacles) > 0 THEN
        SELECT string_agg(DISTINCT s, ', ' ORDER BY s) INTO v_unknown
        FROM unnest(p_obstacles) s
        WHERE NOT EXISTS (SELECT 1 FROM obstacles o WHERE o.map_id = v_map AND o.slug = s);
        IF v_unknown IS NOT NULL THEN
            PERFORM jd_chat__fail(400, 'unknown_obstacle',
                                  format('not in the map''s codebook: %s', v_unknown), 'obstacles');
        END IF;
        SELECT array_agg(o.id ORDER BY o.id) INTO v_obstacles
        FROM obstacles o WHERE o.map_id = v_map AND o.slug = ANY (p_obstacles);
    END IF;
    IF p_emotion IS NULL AND cardinality(v_obstacles) = 0 AND v_stage IS NULL AND v_touch IS NULL
       AND v_persona IS NULL THEN
        PERFORM jd_chat__fail(400, 'empty_code',
                              'a code needs an emotion, obstacles, a persona, a stage or a touchpoint');
    END IF;
    INSERT INTO message_codes (message_id, map_id, span_start, span_end, emotion, obstacle_ids,
                               persona_id, stage_id, touchpoint_id, memo, coder_id, client_id)
    VALUES (m.id, v_map, p_span_start, p_span_end, p_emotion, v_obstacles, v_persona, v_stage,
            v_touch, nullif(btrim(coalesce(p_memo, '')), ''), a.id, p_client_id)
    RETURNING * INTO r;
    UPDATE conversations SET codes_version = codes_version + 1 WHERE id = m.conversation_id;
    PERFORM jd_chat__notify(m.conversation_id);
    RETURN r;
END $$;

-- The code a console frame id already made on the agent's site, if any (resends).
CREATE FUNCTION jd_chat__code_by_client(p_agent_id bigint, p_client_id uuid)
RETURNS message_codes LANGUAGE sql STABLE AS $$
    SELECT mc.* FROM message_codes mc
    JOIN messages m ON m.id = mc.message_id
    JOIN agents a ON a.site_id = m.site_id
    WHERE mc.client_id = p_client_id AND a.id = p_agent_id
$$;

-- Codes a visitor message (or the span [p_span_start, p_span_end) of it). Returns the code.
-- p_client_id (the code.create frame's id) makes a resend return the code made the first time.
CREATE FUNCTION jd_code_message(p_agent_id bigint, p_message_id bigint, p_span_start int,
                                p_span_end int, p_emotion int, p_obstacles text[], p_stage text,
                                p_touchpoint text, p_persona text DEFAULT NULL,
                                p_map text DEFAULT NULL, p_memo text DEFAULT NULL,
                                p_client_id uuid DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r message_codes;
BEGIN
    IF p_client_id IS NOT NULL THEN
        r := jd_chat__code_by_client(p_agent_id, p_client_id);
        IF r.id IS NOT NULL THEN
            RETURN jd_chat__code_json(r);
        END IF;
    END IF;
    RETURN jd_chat__code_json(jd_chat__code_insert(p_agent_id, p_message_id, p_span_start,
                                                   p_span_end, p_emotion, p_obstacles, p_stage,
                                                   p_touchpoint, p_persona, p_map, p_memo, NULL,
                                                   p_client_id));
END $$;

-- Revises a current code: the new values (all of them: a revision replaces, it does not merge)
-- become a new row on the same message and map; the old row keeps its values and gets
-- superseded_at / superseded_by. Revising a code that is no longer current is 409 'superseded',
-- except for a resend of the same revision (same p_client_id), which returns it.
CREATE FUNCTION jd_code_revise(p_agent_id bigint, p_code_id bigint, p_span_start int,
                               p_span_end int, p_emotion int, p_obstacles text[], p_stage text,
                               p_touchpoint text, p_persona text DEFAULT NULL,
                               p_memo text DEFAULT NULL, p_client_id uuid DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a agents := jd_chat__agent(p_agent_id);
    old message_codes;
    r message_codes;
BEGIN
    IF p_client_id IS NOT NULL THEN
        r := jd_chat__code_by_client(p_agent_id, p_client_id);
        IF r.id IS NOT NULL THEN
            RETURN jd_chat__code_json(r) || jsonb_build_object('revises',
                (SELECT id FROM message_codes WHERE superseded_by = r.id));
        END IF;
    END IF;
    SELECT mc.* INTO old FROM message_codes mc JOIN messages m ON m.id = mc.message_id
    WHERE mc.id = p_code_id AND m.site_id = a.site_id
    FOR UPDATE OF mc;
    IF NOT FOUND THEN
        PERFORM jd_chat__fail(404, 'not_found', 'no such code', 'code');
    END IF;
    IF old.superseded_at IS NOT NULL THEN
        PERFORM jd_chat__fail(409, 'superseded', 'this code was already revised or retracted', 'code');
    END IF;
    r := jd_chat__code_insert(p_agent_id, old.message_id, p_span_start, p_span_end, p_emotion,
                              p_obstacles, p_stage, p_touchpoint, p_persona, NULL, p_memo, old.map_id,
                              p_client_id);
    UPDATE message_codes SET superseded_at = now(), superseded_by = r.id WHERE id = old.id;
    RETURN jd_chat__code_json(r) || jsonb_build_object('revises', old.id);
END $$;

-- Withdraws a current code without a replacement (history kept: superseded_at alone).
-- Retracting a retracted code returns it unchanged (resends); a revised one is 409.
CREATE FUNCTION jd_code_retract(p_agent_id bigint, p_code_id bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    a agents := jd_chat__agent(p_agent_id);
    old message_codes;
    v_conv uuid;
BEGIN
    SELECT mc.* INTO old FROM message_codes mc JOIN messages m ON m.id = mc.message_id
    WHERE mc.id = p_code_id AND m.site_id = a.site_id
    FOR UPDATE OF mc;
    IF NOT FOUND THEN
        PERFORM jd_chat__fail(404, 'not_found', 'no such code', 'code');
    END IF;
    IF old.superseded_at IS NOT NULL AND old.superseded_by IS NULL THEN
        RETURN jd_chat__code_json(old);
    END IF;
    IF old.superseded_at IS NOT NULL THEN
        PERFORM jd_chat__fail(409, 'superseded', 'this code was revised', 'code');
    END IF;
    UPDATE message_codes SET superseded_at = now() WHERE id = old.id RETURNING * INTO old;
    SELECT conversation_id INTO v_conv FROM messages WHERE id = old.message_id;
    UPDATE conversations SET codes_version = codes_version + 1 WHERE id = v_conv;
    PERFORM jd_chat__notify(v_conv);
    RETURN jd_chat__code_json(old);
END $$;

-- Coded chat messages as map evidence, shaped like the answers columns the map export
-- aggregates (score, goal_reached, survey_id and question_id are NULL, so the export can
-- UNION ALL it with answers; evidence_id replaces 'answer:' || id). One row per message and span: the latest current code (superseded and retracted
-- codes never count, and when two coders coded the same span the later code wins, so a quote is
-- never counted twice). thought is the coded text (the span, or the whole message), masked when
-- the site's redact setting is not 'off'. A code without persona/stage/touchpoint falls back to
-- the session's persona and the message's journey context, when those belong to the code's map.
-- Left out: respondents that were erased, and sessions of opt-in sites without consent.
CREATE VIEW chat_evidence AS
SELECT DISTINCT ON (mc.message_id, coalesce(mc.span_start, -1), coalesce(mc.span_end, -1))
    m.site_id,
    mc.map_id,
    coalesce(mc.persona_id, sp.id) AS persona_id,
    coalesce(mc.stage_id, ms.id) AS stage_id,
    coalesce(mc.touchpoint_id, mt.id) AS touchpoint_id,
    mc.emotion,
    NULL::smallint AS score,
    NULL::boolean AS goal_reached,
    mc.obstacle_ids,
    CASE WHEN si.redact = 'off' THEN x.coded ELSE jd_chat_redact(x.coded) END AS thought,
    NULL::bigint AS survey_id,
    NULL::bigint AS question_id,
    'chat'::text AS source,
    'message:' || m.id AS evidence_id,
    c.respondent_id,
    c.session_id,
    m.conversation_id,
    m.id AS message_id,
    mc.id AS code_id,
    mc.span_start,
    mc.span_end,
    mc.coder_id,
    mc.created_at AS coded_at,
    m.created_at
FROM message_codes mc
JOIN messages m ON m.id = mc.message_id
JOIN conversations c ON c.id = m.conversation_id
JOIN sites si ON si.id = m.site_id
CROSS JOIN LATERAL (SELECT CASE WHEN mc.span_start IS NULL THEN m.body
                                ELSE substr(m.body, mc.span_start + 1, mc.span_end - mc.span_start)
                           END AS coded) x
LEFT JOIN sessions se ON se.id = c.session_id
LEFT JOIN personas sp ON sp.id = se.persona_id AND sp.map_id = mc.map_id
LEFT JOIN stages ms ON ms.id = m.stage_id AND ms.map_id = mc.map_id
LEFT JOIN touchpoints mt ON mt.id = m.touchpoint_id AND mt.map_id = mc.map_id
LEFT JOIN respondents r ON r.site_id = c.site_id AND r.id = c.respondent_id
WHERE mc.superseded_at IS NULL
  AND r.erased_at IS NULL
  AND (si.consent_mode <> 'opt-in' OR coalesce(se.consent, false))
ORDER BY mc.message_id, coalesce(mc.span_start, -1), coalesce(mc.span_end, -1),
         mc.created_at DESC, mc.id DESC;

-- ===========================================================================================
-- 7. Transcripts
-- ===========================================================================================

-- One CSV field (RFC 4180): always quoted, quotes doubled. A value a spreadsheet would run as a
-- formula (starting with = + - @, tab or carriage return, or their full-width forms) gets a
-- leading apostrophe first (OWASP "CSV injection").
CREATE FUNCTION jd_chat__csv(p text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT '"' || replace(CASE WHEN coalesce(p, '') ~ E'^[=+@\t\r\uFF1D\uFF0B\uFF0D\uFF20-]'
                               THEN '''' || p ELSE coalesce(p, '') END, '"', '""') || '"'
$$;

CREATE FUNCTION jd_chat__html(p text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace(replace(replace(replace(coalesce(p, ''), '&', '&amp;'), '<', '&lt;'),
                                   '>', '&gt;'), '"', '&quot;'), '''', '&#39;')
$$;

-- Transcripts of one or many conversations as one document.
--   p_filters: {"site_id": int (required), "conversation": uuid, "conversations": [uuid],
--               "from": timestamptz, "to": timestamptz (conversations active in [from, to)),
--               "stage": slug (a message written on it, or a current code naming it),
--               "code": obstacle slug (a current code naming it), "coded": bool (any code),
--               "redact": bool (mask e-mails, phones, cards, IPs; forced on when the site's
--               redact setting is 'export' or 'ingest'), "notes": bool (include private notes,
--               default false), "limit": conversations (default 1000, at most 10000)}
--   p_format: 'jsonl' (one message per line, codes inline), 'csv' (RFC 4180, CRLF, header, one
--             row per message with its current codes aggregated), 'text' (plain transcript),
--             'html' (a fragment, every text escaped).
-- Whole conversations are exported (a transcript cut at a time boundary loses its context),
-- ordered by conversation start, then seq. Access control is the caller's: pass the site the
-- caller may read.
CREATE FUNCTION jd_transcript(p_filters jsonb, p_format text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f jsonb := coalesce(p_filters, '{}');
    k text;
    v_site bigint;
    v_convs uuid[];
    v_from timestamptz;
    v_to timestamptz;
    v_limit int;
    v_redact boolean;
    v_notes boolean;
    v_coded boolean;
    out text;
BEGIN
    IF jsonb_typeof(f) <> 'object' THEN
        PERFORM jd_chat__fail(400, 'bad_body', 'filters must be a JSON object');
    END IF;
    FOR k IN SELECT jsonb_object_keys(f) LOOP
        IF k NOT IN ('site_id', 'conversation', 'conversations', 'from', 'to', 'stage', 'code',
                     'coded', 'redact', 'notes', 'limit') THEN
            PERFORM jd_chat__fail(400, 'unknown_field', format('unknown filter "%s"', k), k);
        END IF;
    END LOOP;
    IF p_format IS NULL OR p_format NOT IN ('jsonl', 'csv', 'text', 'html') THEN
        PERFORM jd_chat__fail(400, 'invalid_value', 'format must be jsonl, csv, text or html', 'format');
    END IF;
    BEGIN
        v_site := (f ->> 'site_id')::bigint;
        v_convs := CASE WHEN f ? 'conversation' THEN ARRAY[(f ->> 'conversation')::uuid]
                        WHEN f ? 'conversations' THEN ARRAY(SELECT jsonb_array_elements_text(f -> 'conversations')::uuid)
                   END;
        v_from := (f ->> 'from')::timestamptz;
        v_to := (f ->> 'to')::timestamptz;
        v_limit := least(greatest(coalesce((f ->> 'limit')::int, 1000), 1), 10000);
        v_notes := coalesce((f ->> 'notes')::boolean, false);
        v_coded := coalesce((f ->> 'coded')::boolean, false);
        v_redact := coalesce((f ->> 'redact')::boolean, false);
    EXCEPTION WHEN data_exception THEN
        PERFORM jd_chat__fail(400, 'invalid_value', 'a filter has the wrong type: ' || SQLERRM);
    END;
    IF v_site IS NULL THEN
        PERFORM jd_chat__fail(400, 'missing_field', 'site_id is required', 'site_id');
    END IF;
    v_redact := v_redact OR coalesce((SELECT redact <> 'off' FROM sites WHERE id = v_site), false);

    WITH conv AS (
        SELECT c.* FROM conversations c
        WHERE c.site_id = v_site
          AND (v_convs IS NULL OR c.id = ANY (v_convs))
          AND (v_from IS NULL OR coalesce(c.last_message_at, c.created_at) >= v_from)
          AND (v_to IS NULL OR c.created_at < v_to)
          AND (f ->> 'stage' IS NULL
               OR EXISTS (SELECT 1 FROM messages m JOIN stages s ON s.id = m.stage_id
                          WHERE m.conversation_id = c.id AND s.slug = f ->> 'stage')
               OR EXISTS (SELECT 1 FROM messages m JOIN message_codes mc ON mc.message_id = m.id
                          JOIN stages s ON s.id = mc.stage_id
                          WHERE m.conversation_id = c.id AND mc.superseded_at IS NULL
                            AND s.slug = f ->> 'stage'))
          AND (f ->> 'code' IS NULL
               OR EXISTS (SELECT 1 FROM messages m JOIN message_codes mc ON mc.message_id = m.id
                          JOIN obstacles o ON o.id = ANY (mc.obstacle_ids)
                          WHERE m.conversation_id = c.id AND mc.superseded_at IS NULL
                            AND o.slug = f ->> 'code'))
          AND (NOT v_coded
               OR EXISTS (SELECT 1 FROM messages m JOIN message_codes mc ON mc.message_id = m.id
                          WHERE m.conversation_id = c.id AND mc.superseded_at IS NULL))
        ORDER BY c.created_at, c.id
        LIMIT v_limit
    ), msg_rows AS (
        SELECT c.id AS conv, c.created_at AS conv_at, c.status, c.respondent_id,
               se.consent, si.consent_mode,
               row_number() OVER (PARTITION BY c.id ORDER BY m.seq) AS nth,
               m.seq, m.created_at, m.sender, m.kind,
               a.name AS agent_name,
               CASE WHEN v_redact THEN jd_chat_redact(m.body) ELSE m.body END AS body,
               CASE WHEN v_redact THEN jd_chat_redact(m.page_url) ELSE m.page_url END AS page_url,
               st.slug AS stage, tp.slug AS touchpoint,
               cd.codes
        FROM conv c
        JOIN sites si ON si.id = c.site_id
        JOIN messages m ON m.conversation_id = c.id
        LEFT JOIN sessions se ON se.id = c.session_id
        LEFT JOIN agents a ON a.id = m.agent_id
        LEFT JOIN stages st ON st.id = m.stage_id
        LEFT JOIN touchpoints tp ON tp.id = m.touchpoint_id
        LEFT JOIN LATERAL (
            SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                       'span', CASE WHEN mc.span_start IS NOT NULL
                                    THEN jsonb_build_array(mc.span_start, mc.span_end) END,
                       'text', CASE WHEN v_redact THEN jd_chat_redact(j.coded) ELSE j.coded END,
                       'emotion', mc.emotion,
                       'obstacles', (SELECT coalesce(jsonb_agg(o.slug ORDER BY o.slug), '[]')
                                     FROM obstacles o WHERE o.id = ANY (mc.obstacle_ids)),
                       'stage', cs.slug, 'touchpoint', ct.slug, 'persona', cp.slug,
                       'coder', ca.name, 'coded_at', jd_chat__ts(mc.created_at)))
                   ORDER BY coalesce(mc.span_start, -1), mc.id) AS codes
            FROM message_codes mc
            CROSS JOIN LATERAL (SELECT CASE WHEN mc.span_start IS NULL THEN m.body
                                            ELSE substr(m.body, mc.span_start + 1, mc.span_end - mc.span_start)
                                       END AS coded) j
            LEFT JOIN stages cs ON cs.id = mc.stage_id
            LEFT JOIN touchpoints ct ON ct.id = mc.touchpoint_id
            LEFT JOIN personas cp ON cp.id = mc.persona_id
            LEFT JOIN agents ca ON ca.id = mc.coder_id
            WHERE mc.message_id = m.id AND mc.superseded_at IS NULL
        ) cd ON true
        WHERE v_notes OR m.kind <> 'note'
    )
    SELECT CASE p_format
        WHEN 'jsonl' THEN
            coalesce(string_agg(jsonb_strip_nulls(jsonb_build_object(
                'conversation', r.conv, 'respondent', r.respondent_id,
                'consent_mode', r.consent_mode, 'consent', r.consent,
                'seq', r.seq, 'at', jd_chat__ts(r.created_at), 'sender', r.sender,
                'agent', r.agent_name, 'kind', r.kind, 'body', r.body, 'page', r.page_url,
                'stage', r.stage, 'touchpoint', r.touchpoint,
                'codes', coalesce(r.codes, '[]')))::text || E'\n',
                '' ORDER BY r.conv_at, r.conv, r.seq), '')
        WHEN 'csv' THEN
            'conversation_id,respondent_id,consent,seq,created_at,sender,agent,kind,body,page_url,'
            || 'stage,touchpoint,emotions,obstacles,code_stages,code_touchpoints,coded_spans' || E'\r\n'
            || coalesce(string_agg(concat_ws(',',
                   jd_chat__csv(r.conv::text), jd_chat__csv(r.respondent_id::text),
                   jd_chat__csv(r.consent::text), r.seq::text,
                   jd_chat__csv(jd_chat__ts(r.created_at)), jd_chat__csv(r.sender),
                   jd_chat__csv(r.agent_name), jd_chat__csv(r.kind), jd_chat__csv(r.body),
                   jd_chat__csv(r.page_url), jd_chat__csv(r.stage), jd_chat__csv(r.touchpoint),
                   jd_chat__csv((SELECT string_agg(e ->> 'emotion', ';') FROM jsonb_array_elements(r.codes) e)),
                   jd_chat__csv((SELECT string_agg(DISTINCT o, ';') FROM jsonb_array_elements(r.codes) e,
                                 jsonb_array_elements_text(e -> 'obstacles') o)),
                   jd_chat__csv((SELECT string_agg(DISTINCT e ->> 'stage', ';') FROM jsonb_array_elements(r.codes) e)),
                   jd_chat__csv((SELECT string_agg(DISTINCT e ->> 'touchpoint', ';') FROM jsonb_array_elements(r.codes) e)),
                   jd_chat__csv((SELECT string_agg(e ->> 'text', ' | ') FROM jsonb_array_elements(r.codes) e
                                 WHERE e ? 'span'))) || E'\r\n',
                   '' ORDER BY r.conv_at, r.conv, r.seq), '')
        WHEN 'text' THEN
            coalesce(string_agg(
                CASE WHEN r.nth = 1 THEN
                    format(E'== Conversation %s, opened %s, %s ==\n', r.conv,
                              jd_chat__ts(r.conv_at), r.status)
                ELSE '' END
                || format('[%s] #%s %s', jd_chat__ts(r.created_at), r.seq,
                          CASE WHEN r.kind = 'note' THEN 'Note by ' || coalesce(r.agent_name, 'agent')
                               WHEN r.sender = 'agent' THEN coalesce(r.agent_name, 'Agent')
                               WHEN r.sender = 'system' THEN 'System'
                               WHEN r.kind = 'offline' THEN 'Visitor (offline message)'
                               ELSE 'Visitor' END)
                || CASE WHEN r.sender = 'visitor' AND (r.page_url IS NOT NULL OR r.stage IS NOT NULL)
                        THEN ' (' || concat_ws(', ', r.page_url, 'stage ' || r.stage,
                                                'touchpoint ' || r.touchpoint) || ')'
                        ELSE '' END
                || ': ' || replace(replace(r.body, E'\r\n', E'\n'), E'\n', E'\n    ') || E'\n'
                || CASE WHEN r.nth = r.nth_max THEN E'\n' ELSE '' END,
                '' ORDER BY r.conv_at, r.conv, r.seq), '')
        WHEN 'html' THEN
            '<div class="jd-transcripts">' || E'\n'
            || coalesce(string_agg(
                CASE WHEN r.nth = 1 THEN
                    format(E'<section class="jd-conversation" data-conversation="%s"><h2>Conversation %s</h2>\n',
                           r.conv, r.conv)
                ELSE '' END
                || format(E'<p class="jd-msg jd-%s jd-%s"><time datetime="%s">%s</time> <b>%s</b> #%s: <span class="jd-body">%s</span></p>\n',
                          r.sender, r.kind, jd_chat__ts(r.created_at), jd_chat__ts(r.created_at),
                          jd_chat__html(CASE WHEN r.sender = 'agent' THEN coalesce(r.agent_name, 'Agent')
                                             WHEN r.sender = 'system' THEN 'System' ELSE 'Visitor' END),
                          r.seq, replace(jd_chat__html(r.body), E'\n', '<br>'))
                || CASE WHEN r.nth = r.nth_max THEN E'</section>\n' ELSE '' END,
                '' ORDER BY r.conv_at, r.conv, r.seq), '')
            || '</div>' || E'\n'
        END
    INTO out
    FROM (SELECT x.*, count(*) OVER (PARTITION BY x.conv) AS nth_max FROM msg_rows x) r;
    RETURN out;
END $$;

-- ===========================================================================================
-- 8. Privacy
-- ===========================================================================================

-- Erases a visitor's chats: every conversation of the site opened by that respondent, or (with
-- p_email) by any respondent whose e-mail or verified subject is p_email, or left with that
-- e-mail in the offline form. Conversations are deleted with all their messages (agent replies
-- quote the visitor too), their codes and their end-of-chat ratings (answers with source 'chat'
-- naming the conversation). Instances subscribed to them are notified and find them gone.
-- Idempotent; returns counts and the respondent ids the conversations belonged to.
--
-- Call jd_erase_chat BEFORE jd_erase: jd_erase clears respondents.email and deletes sessions,
-- which this function uses to find the visitor by e-mail.
CREATE FUNCTION jd_erase_chat(p_site_id bigint, p_respondent uuid, p_email text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    targets uuid[];
    who uuid[];
    n_conv bigint;
    n_msg bigint;
    n_codes bigint;
    n_answers bigint;
BEGIN
    SELECT coalesce(array_agg(c.id), '{}'),
           coalesce(array_agg(DISTINCT c.respondent_id) FILTER (WHERE c.respondent_id IS NOT NULL), '{}')
    INTO targets, who
    FROM conversations c
    WHERE c.site_id = p_site_id
      AND (c.respondent_id = p_respondent
           OR (p_email IS NOT NULL
               AND (lower(c.visitor_email) = lower(p_email)
                    OR c.respondent_id IN (SELECT r.id FROM respondents r
                                           WHERE r.site_id = p_site_id
                                             AND lower(r.email) = lower(p_email))
                    OR c.respondent_id IN (SELECT s.respondent_id FROM sessions s
                                           WHERE s.site_id = p_site_id AND s.subject = p_email))));
    SELECT count(*) INTO n_msg FROM messages WHERE conversation_id = ANY (targets);
    SELECT count(*) INTO n_codes FROM message_codes mc JOIN messages m ON m.id = mc.message_id
    WHERE m.conversation_id = ANY (targets);
    DELETE FROM answers a
    WHERE a.site_id = p_site_id AND a.source = 'chat'
      AND a.value ->> 'conversation' = ANY (targets::text[]);
    GET DIAGNOSTICS n_answers = ROW_COUNT;
    DELETE FROM conversations WHERE id = ANY (targets);
    GET DIAGNOSTICS n_conv = ROW_COUNT;
    PERFORM jd_chat__notify(t) FROM unnest(targets) t;
    RETURN jsonb_build_object('conversations', n_conv, 'messages', n_msg, 'codes', n_codes,
                              'answers', n_answers, 'respondents', to_jsonb(who));
END $$;

-- Right of access: a respondent's conversations with every message (notes included: they are
-- data about the person) as one JSON document.
CREATE FUNCTION jd_chat_access(p_site_id bigint, p_respondent uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'conversation', c.id, 'status', c.status, 'email', c.visitor_email,
               'created_at', jd_chat__ts(c.created_at), 'page', c.page_url,
               'messages', (SELECT coalesce(jsonb_agg(jd_chat__message_json(m, true) ORDER BY m.seq), '[]')
                            FROM messages m WHERE m.conversation_id = c.id))
           ORDER BY c.created_at), '[]')
    FROM conversations c
    WHERE c.site_id = p_site_id AND c.respondent_id = p_respondent
$$;

-- Housekeeping, for the daemon's purge timer next to jd_purge_expired: deletes at most p_batch
-- conversations whose last activity is older than their site's retention, then sessions that
-- expired or were revoked over a day ago, login failures older than a day and presence rows
-- older than an hour. Returns the number of rows deleted (call again while it returns p_batch).
CREATE FUNCTION jd_chat_purge_expired(p_batch integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    done integer := 0;
    n integer;
BEGIN
    WITH doomed AS (
        SELECT c.id FROM conversations c JOIN sites s ON s.id = c.site_id
        WHERE s.retention_days IS NOT NULL
          AND coalesce(c.last_message_at, c.created_at) < now() - make_interval(days => s.retention_days)
        LIMIT p_batch)
    DELETE FROM conversations c USING doomed WHERE c.id = doomed.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    done := done + n;
    IF done >= p_batch THEN RETURN done; END IF;

    WITH doomed AS (
        SELECT id FROM agent_sessions
        WHERE coalesce(revoked_at, expires_at) < now() - interval '1 day'
        LIMIT p_batch - done)
    DELETE FROM agent_sessions s USING doomed WHERE s.id = doomed.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    done := done + n;
    IF done >= p_batch THEN RETURN done; END IF;

    WITH doomed AS (
        SELECT id FROM agent_login_failures WHERE failed_at < now() - interval '1 day'
        LIMIT p_batch - done)
    DELETE FROM agent_login_failures f USING doomed WHERE f.id = doomed.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    done := done + n;

    DELETE FROM agent_presence WHERE last_seen < now() - interval '1 hour';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN done + n;
END $$;
