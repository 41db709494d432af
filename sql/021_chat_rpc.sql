-- The daemon's entry points into the chat data layer (issue 6, docs/chat.md). The chat store sends
-- every chat frame as one call, `SELECT jd_chat_rpc(op, ctx, args)`, on its own connection, each
-- in its own implicit transaction (one pipeline sync per call), so the reply is sent only after
-- COMMIT. ctx is built by the daemon and trusted: the visitor's site, respondent and session as
-- the hello made them, or the agent id and site the session check returned; the daemon only
-- passes a conversation for a connection that opened or resumed it (visitors) or that belongs to
-- an agent (the functions below check the agent's site). args is the client's frame, already
-- shape-checked by daemon/src/chat.c. Errors are the JDnnn exceptions of sql/020 (DETAIL = code,
-- HINT = field), which the daemon turns into error frames. The agent console's HTTP routes go
-- through jd_agent_http, which answers like jd_api: a status, a content type and a body, plus
-- the session cookie to set. The catalog's `chat` flag (a site with an enabled agent account)
-- tells the widget whether to offer chat.

-- The stage or touchpoint id for a slug in the site's maps (first map wins), NULL for NULL, and
-- JD400 unknown_stage / unknown_touchpoint for a slug the site does not have.
CREATE FUNCTION jd_chat__slug_id(p_site_id bigint, p_kind text, p_slug text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v bigint;
BEGIN
    IF p_slug IS NULL OR p_slug = '' THEN
        RETURN NULL;
    END IF;
    IF p_kind = 'stage' THEN
        SELECT s.id INTO v FROM stages s JOIN maps m ON m.id = s.map_id
        WHERE m.site_id = p_site_id AND s.slug = p_slug ORDER BY m.id LIMIT 1;
    ELSE
        SELECT t.id INTO v FROM touchpoints t JOIN maps m ON m.id = t.map_id
        WHERE m.site_id = p_site_id AND t.slug = p_slug ORDER BY m.id LIMIT 1;
    END IF;
    IF v IS NULL THEN
        PERFORM jd_chat__fail(400, 'unknown_' || p_kind, format('unknown %s "%s"', p_kind, left(p_slug, 64)),
                              p_kind);
    END IF;
    RETURN v;
END $$;

CREATE FUNCTION jd_chat__presence(p_site_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('online', jsonb_array_length(o) > 0, 'agents', jsonb_array_length(o))
    FROM jd_agents_online(p_site_id) AS o
$$;

-- The agent behind ctx.agent_id, checked again (disabled accounts stop at once).
CREATE FUNCTION jd_chat__ctx_agent(ctx jsonb) RETURNS agents LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jd_chat__agent((ctx ->> 'agent_id')::bigint);
END $$;

-- The site's codebook for the console's coding form: the slugs and names of its maps' stages
-- (in map order), touchpoints, obstacles and personas, each slug once.
CREATE FUNCTION jd_chat__codebook(p_site_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'stages', (SELECT coalesce(jsonb_agg(jsonb_build_object('slug', x.slug, 'name', x.name) ORDER BY x.m, x.pos, x.slug), '[]')
                   FROM (SELECT DISTINCT ON (s.slug) s.slug, s.name, m.id AS m, s.position AS pos
                         FROM stages s JOIN maps m ON m.id = s.map_id WHERE m.site_id = p_site_id
                         ORDER BY s.slug, m.id) x),
        'touchpoints', (SELECT coalesce(jsonb_agg(jsonb_build_object('slug', x.slug, 'name', x.name) ORDER BY x.name, x.slug), '[]')
                        FROM (SELECT DISTINCT ON (t.slug) t.slug, t.name
                              FROM touchpoints t JOIN maps m ON m.id = t.map_id WHERE m.site_id = p_site_id
                              ORDER BY t.slug, m.id) x),
        'obstacles', (SELECT coalesce(jsonb_agg(jsonb_build_object('slug', x.slug, 'name', x.name) ORDER BY x.name, x.slug), '[]')
                      FROM (SELECT DISTINCT ON (o.slug) o.slug, o.name
                            FROM obstacles o JOIN maps m ON m.id = o.map_id WHERE m.site_id = p_site_id
                            ORDER BY o.slug, m.id) x),
        'personas', (SELECT coalesce(jsonb_agg(jsonb_build_object('slug', x.slug, 'name', x.name) ORDER BY x.name, x.slug), '[]')
                     FROM (SELECT DISTINCT ON (p.slug) p.slug, p.name
                           FROM personas p JOIN maps m ON m.id = p.map_id WHERE m.site_id = p_site_id
                           ORDER BY p.slug, m.id) x))
$$;

CREATE FUNCTION jd_chat__int(p jsonb, k text) RETURNS int LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p -> k) = 'number' THEN (p ->> k)::numeric::int END
$$;

CREATE FUNCTION jd_chat__span(p jsonb, i int) RETURNS int LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p) = 'array' AND jsonb_typeof(p -> i) = 'number'
                THEN (p ->> i)::numeric::int END
$$;

CREATE FUNCTION jd_chat__obstacles(p jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p) = 'array'
                THEN ARRAY(SELECT jsonb_array_elements_text(p)) END
$$;

-- The live state gains `unread` (visitor messages beyond the agents' read watermark), so an
-- inbox.update can carry the count consoles show. jd_chat_poll picks this definition up.
CREATE OR REPLACE FUNCTION jd_chat_state(p_conversation uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
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
        'unread', (SELECT count(*) FROM messages m
                   WHERE m.conversation_id = c.id AND m.sender = 'visitor'
                     AND m.seq > c.agent_read_seq),
        'codes_version', c.codes_version,
        'updated_at', jd_chat__ts(c.updated_at))
    FROM conversations c
    LEFT JOIN agents aa ON aa.id = c.assigned_agent_id
    LEFT JOIN agents ta ON ta.id = c.agent_typing_id
    WHERE c.id = p_conversation
$$;

CREATE FUNCTION jd_chat_rpc(op text, ctx jsonb, args jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_site bigint := (ctx ->> 'site_id')::bigint;
    v_conv uuid;
    a agents;
    r record;
    v jsonb;
    v_stage bigint;
    v_touch bigint;
BEGIN
    IF args ? 'conversation' THEN
        v_conv := (args ->> 'conversation')::uuid;
    END IF;
    CASE op
    -- ---- visitors ---------------------------------------------------------------------------
    WHEN 'open' THEN
        v_stage := jd_chat__slug_id(v_site, 'stage', args ->> 'stage');
        v_touch := jd_chat__slug_id(v_site, 'touchpoint', args ->> 'touchpoint');
        BEGIN
            SELECT * INTO r FROM jd_chat_open(v_site, (ctx ->> 'respondent')::uuid,
                (ctx ->> 'session')::uuid, args ->> 'email', args #>> '{page,url}', v_stage,
                v_touch, (args ->> 'id')::uuid);
        EXCEPTION WHEN SQLSTATE 'JD409' THEN
            PERFORM jd_chat__fail(403, 'chat_forbidden', 'this chat.open id belongs to another visitor', 'id');
        END;
        SELECT jsonb_build_object('conversation', c.id, 'token', r.token, 'status', c.status,
                                  'last_seq', c.last_seq, 'presence', jd_chat__presence(c.site_id))
        INTO v FROM conversations c WHERE c.id = r.conversation_id;
        RETURN v;
    WHEN 'resume' THEN
        PERFORM 1 FROM conversations c
        WHERE c.id = v_conv AND c.site_id = v_site AND c.token_hash = jd_chat__hash(args ->> 'token');
        IF NOT FOUND THEN
            PERFORM jd_chat__fail(403, 'chat_forbidden', 'unknown conversation or wrong token', 'token');
        END IF;
        SELECT jsonb_build_object('conversation', s ->> 'conversation', 'status', s ->> 'status',
                                  'last_seq', (s ->> 'last_seq')::bigint, 'receipts', s -> 'receipts',
                                  'presence', jd_chat__presence(v_site))
        INTO v FROM jd_chat_state(v_conv) AS s;
        RETURN v;
    WHEN 'message' THEN
        v_stage := jd_chat__slug_id(v_site, 'stage', args ->> 'stage');
        v_touch := jd_chat__slug_id(v_site, 'touchpoint', args ->> 'touchpoint');
        v := jd_chat_insert(jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
            'conversation_id', v_conv, 'site_id', v_site, 'client_id', args ->> 'id',
            'sender', 'visitor', 'kind', coalesce(args ->> 'kind', 'text'), 'body', args ->> 'body',
            'page_url', left(args #>> '{page,url}', 2048), 'stage_id', v_stage,
            'touchpoint_id', v_touch, 'client_ts', args ->> 'ts'))));
        RETURN jsonb_build_object('seq', v -> (args ->> 'id'));
    WHEN 'typing' THEN
        RETURN jsonb_build_object('notified', jd_chat_typing(v_conv, 'visitor', coalesce((args ->> 'on')::boolean, false)));
    WHEN 'read' THEN
        RETURN jd_chat_mark(v_conv, (args ->> 'upto_seq')::bigint, args ->> 'what', 'visitor');
    WHEN 'email' THEN
        PERFORM jd_chat_set_email(v_conv, args ->> 'email');
        RETURN '{}';
    WHEN 'close' THEN
        RETURN jd_chat_close(v_conv, NULL);
    WHEN 'rating' THEN
        RETURN jd_chat_rate(v_conv, (args ->> 'id')::uuid, jd_chat__int(args, 'emotion'),
                            jd_chat__int(args, 'score'), args ->> 'text');
    WHEN 'presence' THEN
        RETURN jd_chat__presence(v_site);
    -- ---- agents -----------------------------------------------------------------------------
    WHEN 'agent_hello' THEN
        SELECT * INTO r FROM jd_agent_session(ctx ->> 'token');
        IF NOT FOUND THEN
            PERFORM jd_chat__fail(401, 'session_expired', 'sign in again: the session has ended');
        END IF;
        RETURN jsonb_build_object(
            'agent', jsonb_build_object('id', r.agent_id, 'name', r.name, 'email', r.email,
                                        'role', r.role, 'site', r.site_key, 'site_id', r.site_id),
            'online', jd_agents_online(r.site_id), 'canned', jd_canned_list(r.agent_id),
            'catalog', jd_chat__codebook(r.site_id));
    WHEN 'agent_check' THEN
        PERFORM 1 FROM jd_agent_session(ctx ->> 'token') s
        WHERE s.agent_id = (ctx ->> 'agent_id')::bigint;
        RETURN jsonb_build_object('ok', FOUND);
    WHEN 'agent_presence' THEN
        RETURN jsonb_build_object('changed', jd_agent_presence((ctx ->> 'agent_id')::bigint,
                                  ctx ->> 'instance', coalesce((args ->> 'online')::boolean, false)));
    WHEN 'online' THEN
        RETURN jsonb_build_object('online', jd_agents_online(v_site));
    WHEN 'inbox' THEN
        RETURN jd_agent_inbox((ctx ->> 'agent_id')::bigint, args ->> 'status',
                              jd_chat__int(args, 'limit'), jd_chat__int(args, 'offset'));
    WHEN 'agent_open' THEN
        RETURN jd_agent_conversation((ctx ->> 'agent_id')::bigint, v_conv);
    WHEN 'agent_message' THEN
        a := jd_chat__ctx_agent(ctx);
        -- 404 for another site's conversation, the same as a missing one.
        PERFORM jd_chat__conversation(v_conv, a.id, false);
        v := jd_chat_insert(jsonb_build_array(jsonb_build_object(
            'conversation_id', v_conv, 'site_id', a.site_id, 'client_id', args ->> 'id',
            'sender', 'agent', 'agent_id', a.id, 'kind', coalesce(args ->> 'kind', 'text'),
            'body', args ->> 'body')));
        RETURN jsonb_build_object('seq', v -> (args ->> 'id'));
    WHEN 'agent_typing' THEN
        RETURN jsonb_build_object('notified', jd_chat_typing(v_conv, 'agent',
                                  coalesce((args ->> 'on')::boolean, false), (ctx ->> 'agent_id')::bigint));
    WHEN 'agent_read' THEN
        RETURN jd_chat_mark(v_conv, (args ->> 'upto_seq')::bigint, args ->> 'what', 'agent',
                            (ctx ->> 'agent_id')::bigint);
    WHEN 'agent_close' THEN
        RETURN jd_chat_close(v_conv, (ctx ->> 'agent_id')::bigint);
    WHEN 'code_create' THEN
        RETURN jd_code_message((ctx ->> 'agent_id')::bigint, (args ->> 'message_id')::bigint,
            jd_chat__span(args -> 'span', 0), jd_chat__span(args -> 'span', 1),
            jd_chat__int(args, 'emotion'), jd_chat__obstacles(args -> 'obstacles'),
            args ->> 'stage', args ->> 'touchpoint', args ->> 'persona', args ->> 'map',
            args ->> 'memo', (args ->> 'id')::uuid);
    WHEN 'code_revise' THEN
        RETURN jd_code_revise((ctx ->> 'agent_id')::bigint, (args ->> 'code')::bigint,
            jd_chat__span(args -> 'span', 0), jd_chat__span(args -> 'span', 1),
            jd_chat__int(args, 'emotion'), jd_chat__obstacles(args -> 'obstacles'),
            args ->> 'stage', args ->> 'touchpoint', args ->> 'persona', args ->> 'memo',
            (args ->> 'id')::uuid);
    WHEN 'code_retract' THEN
        RETURN jd_code_retract((ctx ->> 'agent_id')::bigint, (args ->> 'code')::bigint);
    WHEN 'codes' THEN
        PERFORM jd_chat__conversation(v_conv, (ctx ->> 'agent_id')::bigint, false);
        RETURN jsonb_build_object('conversation', v_conv,
                                  'codes_version', (SELECT codes_version FROM conversations WHERE id = v_conv),
                                  'codes', jd_chat_codes(v_conv, false));
    WHEN 'codes_history' THEN
        PERFORM jd_chat__conversation(v_conv, (ctx ->> 'agent_id')::bigint, false);
        RETURN jsonb_build_object('conversation', v_conv, 'codes', jd_chat_codes(v_conv, true));
    WHEN 'canned' THEN
        RETURN jsonb_build_object('canned', jd_canned_list((ctx ->> 'agent_id')::bigint));
    WHEN 'canned_save' THEN
        RETURN jd_canned_save((ctx ->> 'agent_id')::bigint, args ->> 'shortcut', args ->> 'title',
                              args ->> 'body');
    WHEN 'canned_delete' THEN
        RETURN jsonb_build_object('deleted', jd_canned_delete((ctx ->> 'agent_id')::bigint,
                                                              args ->> 'shortcut'));
    -- ---- both -------------------------------------------------------------------------------
    WHEN 'poll' THEN
        RETURN jsonb_build_object('results', jd_chat_poll(args));
    ELSE
        PERFORM jd_chat__fail(400, 'unknown_type', format('unknown chat operation "%s"', left(op, 32)));
    END CASE;
    RETURN NULL;
END $$;

-- The agent console's HTTP routes (docs/chat.md, "HTTP routes"). op is login, logout, me or
-- transcript; args carries the JSON body's fields or the query, and `token`, the session cookie.
-- cookie is the session token to set (login), '' to clear it (logout), NULL to leave it.
CREATE FUNCTION jd_agent_http(op text, args jsonb)
RETURNS TABLE (status int, content_type text, body text, cookie text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    s record;
    v_format text := coalesce(args ->> 'format', 'html');
    v_type text;
    v_err text;
BEGIN
    CASE op
    WHEN 'login' THEN
        IF jsonb_typeof(args -> 'site') IS DISTINCT FROM 'string'
           OR jsonb_typeof(args -> 'email') IS DISTINCT FROM 'string'
           OR jsonb_typeof(args -> 'password') IS DISTINCT FROM 'string' THEN
            RETURN QUERY SELECT 400, 'application/json',
                '{"error":{"code":"bad_request","message":"send {\"site\",\"email\",\"password\"} as JSON strings"}}', NULL::text;
            RETURN;
        END IF;
        SELECT * INTO r FROM jd_agent_login(args ->> 'site', args ->> 'email', args ->> 'password');
        IF r.error = 'too_many_attempts' THEN
            RETURN QUERY SELECT 429, 'application/json',
                '{"error":{"code":"too_many_attempts","message":"too many failed sign-ins; try again in 15 minutes"}}', NULL::text;
        ELSIF r.error IS NOT NULL THEN
            RETURN QUERY SELECT 401, 'application/json',
                '{"error":{"code":"invalid_credentials","message":"wrong e-mail or password"}}', NULL::text;
        ELSE
            RETURN QUERY SELECT 200, 'application/json',
                jsonb_build_object('agent', r.agent, 'expires_at', jd_chat__ts(r.expires_at))::text,
                r.token;
        END IF;
    WHEN 'logout' THEN
        PERFORM jd_agent_logout(args ->> 'token');
        RETURN QUERY SELECT 204, 'application/json', '', '';
    WHEN 'me' THEN
        SELECT * INTO s FROM jd_agent_session(args ->> 'token');
        IF NOT FOUND THEN
            RETURN QUERY SELECT 401, 'application/json',
                '{"error":{"code":"unauthorized","message":"not signed in"}}', NULL::text;
            RETURN;
        END IF;
        RETURN QUERY SELECT 200, 'application/json', jsonb_build_object('agent', jsonb_build_object(
            'id', s.agent_id, 'site_id', s.site_id, 'site', s.site_key, 'email', s.email,
            'name', s.name, 'role', s.role), 'expires_at', jd_chat__ts(s.expires_at))::text, NULL::text;
    WHEN 'transcript' THEN
        SELECT * INTO s FROM jd_agent_session(args ->> 'token');
        IF NOT FOUND THEN
            RETURN QUERY SELECT 401, 'application/json',
                '{"error":{"code":"unauthorized","message":"not signed in"}}', NULL::text;
            RETURN;
        END IF;
        v_type := CASE v_format WHEN 'html' THEN 'text/html; charset=utf-8'
                                WHEN 'text' THEN 'text/plain; charset=utf-8'
                                WHEN 'csv' THEN 'text/csv; charset=utf-8'
                                WHEN 'jsonl' THEN 'application/x-ndjson' END;
        IF v_type IS NULL THEN
            RETURN QUERY SELECT 400, 'application/json',
                '{"error":{"code":"bad_request","message":"format must be html, text, csv or jsonl"}}', NULL::text;
            RETURN;
        END IF;
        BEGIN
            PERFORM jd_chat__conversation((args ->> 'conversation')::uuid, s.agent_id, false);
        EXCEPTION WHEN invalid_text_representation OR SQLSTATE 'JD404' THEN
            RETURN QUERY SELECT 404, 'application/json',
                '{"error":{"code":"not_found","message":"no such conversation"}}', NULL::text;
            RETURN;
        END;
        RETURN QUERY SELECT 200, v_type,
            jd_transcript(jsonb_build_object('site_id', s.site_id,
                                             'conversation', args ->> 'conversation',
                                             'redact', coalesce(args ->> 'redact', '') IN ('1', 'true')),
                          v_format), NULL::text;
    ELSE
        RETURN QUERY SELECT 404, 'application/json',
            '{"error":{"code":"not_found","message":"no such route"}}', NULL::text;
    END CASE;
EXCEPTION WHEN SQLSTATE 'JD400' THEN
    GET STACKED DIAGNOSTICS v_err = MESSAGE_TEXT;
    RETURN QUERY SELECT 400, 'application/json',
        jsonb_build_object('error', jsonb_build_object('code', 'bad_request', 'message', v_err))::text,
        NULL::text;
END $$;
