-- pgTAP: chat routes of the admin API (sql/022_chat_api.sql). Transcripts: GET /conversations and
-- GET /conversations/{id}/transcript in every format with its content type, HTML escaping, the
-- filters, forced redaction, 400 for bad filters, admin scope and site-bound tokens, audit
-- without content. Agents: /sites/{id}/agents list, create (bcrypt, never echoed or audited),
-- PATCH (password change ends sessions, disable, enable), DELETE (disables), 404/403/400.
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

SELECT (jd_site_create('Chat API', '{https://c.example}', 'none-required', 'pgtap') ->> 'id') AS site \gset
SELECT key AS site_key FROM sites WHERE id = :site \gset
SELECT (jd_site_create('Other', '{https://o.example}', 'none-required', 'pgtap') ->> 'id') AS other \gset
CREATE TEMP TABLE tok AS
SELECT jd_token_create('ops', 'admin', NULL, NULL, 'pgtap') ->> 'token' AS admin,
       jd_token_create('analyst', 'read', NULL, NULL, 'pgtap') ->> 'token' AS reader,
       jd_token_create('site admin', 'admin', (SELECT key FROM sites WHERE id = :site), NULL, 'pgtap') ->> 'token' AS mine,
       jd_token_create('other admin', 'admin', (SELECT key FROM sites WHERE id = :other), NULL, 'pgtap') ->> 'token' AS other;
SELECT (jd_apply_map(jsonb_build_object('site', :'site_key', 'name', 'M',
        'stages', jsonb_build_array(jsonb_build_object('name', 'Look'), jsonb_build_object('name', 'Purchase')),
        'touchpoints', jsonb_build_array(jsonb_build_object('name', 'Website')),
        'obstacles', jsonb_build_array(jsonb_build_object('name', 'Shipping cost'))), 'pgtap') ->> 'map_id') AS map \gset
SELECT id AS purchase FROM stages WHERE map_id = :map AND slug = 'purchase' \gset
SELECT jd_agent_create(:site, 'anna@c.example', 'Anna', 'agent', 'correct horse battery') AS anna \gset

-- c1: a hostile message, a coded one, a note; c2 (other day, uncoded); c3 on the other site.
SELECT conversation_id AS c1 FROM jd_chat_open(:site, gen_random_uuid(), NULL, NULL, 'https://c.example/cart', NULL, NULL) \gset
SELECT conversation_id AS c2 FROM jd_chat_open(:site, gen_random_uuid(), NULL, NULL, 'https://c.example/', NULL, NULL) \gset
SELECT conversation_id AS c3 FROM jd_chat_open(:other, gen_random_uuid(), NULL, NULL, 'https://o.example/', NULL, NULL) \gset
CREATE FUNCTION pg_temp.m(conv uuid, body text, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('conversation_id', conv, 'site_id', (SELECT site_id FROM conversations WHERE id = conv),
                              'client_id', gen_random_uuid(), 'body', body) || extra $$;
SELECT jd_chat_insert(jsonb_build_array(
    pg_temp.m(:'c1', '<img src=x onerror=alert(1)> & "quotes"'),
    pg_temp.m(:'c1', 'Shipping is 12.99, mail me at ana@example.com', jsonb_build_object('stage_id', :purchase)),
    pg_temp.m(:'c1', 'internal: VIP', jsonb_build_object('sender', 'agent', 'agent_id', :anna, 'kind', 'note')),
    pg_temp.m(:'c1', '=1+1', jsonb_build_object('sender', 'agent', 'agent_id', :anna)),
    pg_temp.m(:'c2', 'Just browsing'),
    pg_temp.m(:'c3', 'Other site secret'))) \g /dev/null
SELECT jd_code_message(:anna, (SELECT id FROM messages WHERE conversation_id = :'c1' AND seq = 2), 0, 11, 2,
                       ARRAY['shipping-cost'], 'purchase', NULL) \g /dev/null
UPDATE conversations SET created_at = '2026-01-01T10:00Z', last_message_at = '2026-01-01T10:05Z' WHERE id = :'c2';

CREATE FUNCTION pg_temp.api(who text, m text, p text, q jsonb DEFAULT '{}', b text DEFAULT NULL)
RETURNS TABLE (status int, content_type text, body text) LANGUAGE sql AS $$
    SELECT a.* FROM tok, jd_api(m, p, q, b, CASE who WHEN 'admin' THEN tok.admin WHEN 'reader' THEN tok.reader
                                             WHEN 'mine' THEN tok.mine ELSE tok.other END) a
$$;
CREATE FUNCTION pg_temp.err(who text, m text, p text, q jsonb DEFAULT '{}', b text DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
    SELECT a.status || ' ' || (a.body::jsonb #>> '{error,code}') || coalesce(' ' || (a.body::jsonb #>> '{error,field}'), '')
      FROM pg_temp.api(who, m, p, q, b) a $$;
CREATE FUNCTION pg_temp.conv(q jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT body FROM pg_temp.api('admin', 'GET', '/conversations', q) $$;

SELECT is(count(*), 4::bigint, 'the four chat routes are in the route table')
FROM api_routes WHERE template IN ('/conversations', '/conversations/{id}/transcript', '/sites/{id}/agents', '/sites/{id}/agents/{aid}');

-- ---- transcripts ---------------------------------------------------------------------------
SELECT results_eq($$SELECT status, content_type FROM pg_temp.api('admin', 'GET', '/conversations', jsonb_build_object('site', $$ || quote_literal(:'site_key') || $$))$$,
                  $$VALUES (200, 'application/x-ndjson; charset=utf-8')$$, 'bulk export: JSONL by default');
SELECT is((SELECT count(*) FROM regexp_split_to_table(rtrim(pg_temp.conv(jsonb_build_object('site', :site)), E'\n'), E'\n') l
            WHERE (l::jsonb ->> 'conversation') IS NOT NULL), 4::bigint,
          'JSONL: one valid JSON object per message of the site (notes left out)');
SELECT ok(pg_temp.conv(jsonb_build_object('site', :site)) NOT LIKE '%Other site secret%', '... never another site''s');
SELECT ok(pg_temp.conv(jsonb_build_object('site', :site)) NOT LIKE '%internal: VIP%', '... no notes unless asked');
SELECT ok(pg_temp.conv(jsonb_build_object('site', :site, 'notes', 'true')) LIKE '%internal: VIP%', '... notes=true includes them');

SELECT results_eq($$SELECT status, content_type FROM pg_temp.api('admin', 'GET', '/conversations', jsonb_build_object('site', $$ || :site || $$, 'format', 'csv'))$$,
                  $$VALUES (200, 'text/csv; charset=utf-8')$$, 'CSV: text/csv');
SELECT is(split_part(pg_temp.conv(jsonb_build_object('site', :site, 'format', 'csv')), E'\r\n', 1),
          'conversation_id,respondent_id,consent,seq,created_at,sender,agent,kind,body,page_url,stage,touchpoint,emotions,obstacles,code_stages,code_touchpoints,coded_spans',
          '... with its header');
SELECT ok(strpos(pg_temp.conv(jsonb_build_object('site', :site, 'format', 'csv')), '"''=1+1"') > 0, '... and the formula guard');
SELECT results_eq($$SELECT status, content_type FROM pg_temp.api('admin', 'GET', '/conversations', jsonb_build_object('site', $$ || :site || $$, 'format', 'text'))$$,
                  $$VALUES (200, 'text/plain; charset=utf-8')$$, 'text: text/plain');
SELECT ok(pg_temp.conv(jsonb_build_object('site', :site, 'format', 'text')) LIKE '%== Conversation ' || :'c1' || '%', '... a readable transcript');
SELECT results_eq($$SELECT status, content_type FROM pg_temp.api('admin', 'GET', '/conversations', jsonb_build_object('site', $$ || :site || $$, 'format', 'html'))$$,
                  $$VALUES (200, 'text/html; charset=utf-8')$$, 'html: text/html');
SELECT pg_temp.conv(jsonb_build_object('site', :site, 'format', 'html')) AS html \gset
SELECT ok(:'html' LIKE E'<!DOCTYPE html>\n%</html>\n', '... a whole page');
SELECT ok(strpos(:'html', '&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quotes&quot;') > 0, '... the message escaped');
SELECT ok(strpos(:'html', '<img') = 0, '... and no <img> tag anywhere');

-- One conversation.
SELECT results_eq($$SELECT status, content_type FROM pg_temp.api('admin', 'GET', '/conversations/$$ || :'c1' || $$/transcript', '{"format":"csv"}')$$,
                  $$VALUES (200, 'text/csv; charset=utf-8')$$, 'GET /conversations/{id}/transcript?format=csv');
SELECT is(regexp_count((SELECT body FROM pg_temp.api('admin', 'GET', '/conversations/' || :'c1' || '/transcript', '{"format":"csv"}')), E'\r\n'),
          4, '... header and c1''s three messages');
SELECT ok((SELECT body FROM pg_temp.api('admin', 'GET', '/conversations/' || :'c1' || '/transcript', '{"redact":"true"}')) LIKE '%mail me at [email]%',
          '... redact=true masks the e-mail');
SELECT ok((SELECT body FROM pg_temp.api('admin', 'GET', '/conversations/' || :'c1' || '/transcript', '{"redact":"true"}')) LIKE '%Shipping is 12.99%',
          '... and keeps the price');
SELECT is(pg_temp.err('admin', 'GET', '/conversations/00000000-0000-4000-8000-000000000000/transcript'), '404 not_found', 'unknown conversation: 404');
SELECT is(pg_temp.err('admin', 'GET', '/conversations/not-a-uuid/transcript'), '404 not_found', 'not a uuid: 404');
SELECT is(pg_temp.err('admin', 'GET', '/conversations/' || :'c1' || '/transcript', '{"stage":"purchase"}'), '400 unknown_field stage',
          'the one-conversation route takes site, format, redact and notes only');
SELECT is((SELECT status FROM pg_temp.api('admin', 'GET', '/conversations/' || :'c1' || '/transcript', jsonb_build_object('site', :'site_key'))),
          200, '... ?site= of the conversation''s site: 200');
SELECT is(pg_temp.err('admin', 'GET', '/conversations/' || :'c1' || '/transcript', jsonb_build_object('site', :other)), '404 not_found',
          '... of another site: not found there');

-- Filters.
SELECT is((SELECT count(DISTINCT l::jsonb ->> 'conversation') FROM regexp_split_to_table(rtrim(pg_temp.conv(
           jsonb_build_object('site', :site, 'from', '2026-06-01')), E'\n'), E'\n') l), 1::bigint, 'from: c2 (January) is out');
SELECT is((SELECT min(l::jsonb ->> 'conversation') FROM regexp_split_to_table(rtrim(pg_temp.conv(
           jsonb_build_object('site', :site, 'to', '2026-01-02T00:00:00Z')), E'\n'), E'\n') l), :'c2'::text, 'to: only c2');
SELECT is((SELECT count(DISTINCT l::jsonb ->> 'conversation') FROM regexp_split_to_table(rtrim(pg_temp.conv(
           jsonb_build_object('site', :site, 'stage', 'purchase')), E'\n'), E'\n') l), 1::bigint, 'stage: c1');
SELECT is((SELECT count(DISTINCT l::jsonb ->> 'conversation') FROM regexp_split_to_table(rtrim(pg_temp.conv(
           jsonb_build_object('site', :site, 'code', 'shipping-cost')), E'\n'), E'\n') l), 1::bigint, 'code: c1');
SELECT is((SELECT count(DISTINCT l::jsonb ->> 'conversation') FROM regexp_split_to_table(rtrim(pg_temp.conv(
           jsonb_build_object('site', :site, 'coded', '1')), E'\n'), E'\n') l), 1::bigint, 'coded: c1');
SELECT is((SELECT count(DISTINCT l::jsonb ->> 'conversation') FROM regexp_split_to_table(rtrim(pg_temp.conv(
           jsonb_build_object('site', :site, 'limit', '1')), E'\n'), E'\n') l), 1::bigint, 'limit: conversations');
SELECT is(pg_temp.conv(jsonb_build_object('site', :site, 'from', '2030-01-01')), '', 'nothing in the window: an empty JSONL body');
SELECT is(pg_temp.conv(jsonb_build_object('site', :site, 'from', '2030-01-01', 'format', 'csv')),
          E'conversation_id,respondent_id,consent,seq,created_at,sender,agent,kind,body,page_url,stage,touchpoint,emotions,obstacles,code_stages,code_touchpoints,coded_spans\r\n',
          '... and a CSV header alone');
-- A site whose redact setting is not off is always masked.
UPDATE sites SET redact = 'export' WHERE id = :site;
SELECT ok(pg_temp.conv(jsonb_build_object('site', :site, 'redact', 'false')) NOT LIKE '%ana@example.com%', 'the site''s redact setting forces masking');
UPDATE sites SET redact = 'off' WHERE id = :site;

-- Bad filters are 400 and name the field.
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'format', 'pdf')), '400 invalid_value format', 'unknown format');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'from', 'yesterday')), '400 invalid_value from', 'bad from');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'to', '2026-13-40')), '400 invalid_value to', 'impossible to');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'from', '2026-02-01', 'to', '2026-01-01')),
          '400 invalid_range from', 'from after to');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'stage', 'nowhere')), '400 unknown_stage stage', 'unknown stage');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'code', 'nothing')), '400 unknown_obstacle code', 'unknown code');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'coded', 'maybe')), '400 invalid_value coded', 'coded not a boolean');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'redact', '2')), '400 invalid_value redact', 'redact not a boolean');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'notes', 'x')), '400 invalid_value notes', 'notes not a boolean');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'limit', '0')), '400 invalid_value limit', 'limit 0');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'limit', '10001')), '400 invalid_value limit', 'limit above 10000');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', :site, 'respondent', 'x')), '400 unknown_field respondent', 'unknown filter');
SELECT is(pg_temp.err('admin', 'GET', '/conversations', jsonb_build_object('site', 'no-such-site')), '400 unknown_site site', 'unknown site');
SELECT is(pg_temp.err('admin', 'GET', '/conversations'), '400 missing_field site', 'several sites and an unbound token: name one');

-- Access: admin scope; a site-bound token reads its own site.
SELECT is(pg_temp.err('reader', 'GET', '/conversations', jsonb_build_object('site', :site)), '403 forbidden', 'a read-scope token may not read transcripts');
SELECT is(pg_temp.err('reader', 'GET', '/conversations/' || :'c1' || '/transcript'), '403 forbidden', '... not even one');
SELECT is(pg_temp.err('other', 'GET', '/conversations', jsonb_build_object('site', :site)), '403 forbidden', 'another site''s token: 403');
SELECT is(pg_temp.err('other', 'GET', '/conversations/' || :'c1' || '/transcript'), '403 forbidden', '... for one conversation too');
SELECT ok((SELECT body FROM pg_temp.api('other', 'GET', '/conversations')) LIKE '%Other site secret%', 'a site-bound token defaults to its site');
SELECT ok((SELECT body FROM pg_temp.api('mine', 'GET', '/conversations')) NOT LIKE '%Other site secret%', '... and only that one');
SELECT is((SELECT status FROM pg_temp.api('admin', 'POST', '/conversations')), 405, 'POST /conversations: 405');
SELECT results_eq($$SELECT status, content_type FROM jd_admin('GET', '/conversations/$$ || :'c1' || $$/transcript', '{"format":"html"}', NULL, 'journeyctl:pgtap')$$,
                  $$VALUES (200, 'text/html; charset=utf-8')$$, 'jd_admin passes the content type on too');

-- Audit: every export, its filters, no content.
SELECT ok((SELECT count(*) FROM audit_log WHERE action = 'export' AND object_type = 'conversation') >= 20, 'exports are audited');
SELECT is((SELECT detail FROM audit_log WHERE action = 'export' AND object_type = 'conversation' AND detail #>> '{filters,stage}' = 'purchase' LIMIT 1),
          '{"format": "jsonl", "filters": {"stage": "purchase"}}', '... with the format and filters');
SELECT ok(NOT EXISTS (SELECT 1 FROM audit_log WHERE detail::text LIKE '%Shipping is%' OR detail::text LIKE '%ana@example%'), '... never the content');

-- ---- agents -------------------------------------------------------------------------------
SELECT results_eq($$SELECT status, content_type FROM pg_temp.api('admin', 'GET', '/sites/$$ || :site || $$/agents')$$,
                  $$VALUES (200, 'application/json')$$, 'GET /sites/{id}/agents');
SELECT is((SELECT body::jsonb #> '{items,0,email}' FROM pg_temp.api('admin', 'GET', '/sites/' || :site || '/agents')), '"anna@c.example"', '... lists Anna');
SELECT is((SELECT body::jsonb -> 'total' FROM pg_temp.api('admin', 'GET', '/sites/' || :'site_key' || '/agents')), '1', '... the site by key too');
SELECT ok((SELECT body FROM pg_temp.api('admin', 'GET', '/sites/' || :site || '/agents')) !~ 'password|\$2a\$', '... never a password hash');

SELECT * INTO TEMP created FROM pg_temp.api('admin', 'POST', '/sites/' || :site || '/agents', '{}',
                                            '{"email":"ben@c.example","name":"Ben","role":"admin","password":"Tr0ub4dor&3 horse"}');
SELECT is((SELECT status FROM created), 201, 'POST creates an agent: 201');
SELECT is((SELECT body::jsonb - 'id' - 'created_at' - 'updated_at' FROM created),
          jsonb_build_object('site_id', :site, 'email', 'ben@c.example', 'name', 'Ben', 'role', 'admin',
                             'disabled', false, 'disabled_at', NULL, 'online', false), '... answers the agent, without the password');
SELECT (body::jsonb ->> 'id')::bigint AS ben FROM created \gset
SELECT ok((SELECT password_hash LIKE '$2a$10$%' FROM agents WHERE id = :ben), '... stored as bcrypt');
SELECT is((SELECT error FROM jd_agent_login(:'site_key', 'BEN@c.example', 'Tr0ub4dor&3 horse')), NULL, '... who can sign in');
SELECT is((SELECT body::jsonb ->> 'name' FROM pg_temp.api('admin', 'POST', '/sites/' || :site || '/agents', '{}',
          '{"email":"cleo@c.example","password":"long enough password"}')), 'cleo', 'the name defaults to the e-mail''s local part');
SELECT is(pg_temp.err('admin', 'POST', '/sites/' || :site || '/agents', '{}', '{"email":"ben@C.example","password":"another password"}'),
          '409 conflict email', 'an e-mail used on the site (any case): 409');
SELECT is(pg_temp.err('admin', 'POST', '/sites/' || :site || '/agents', '{}', '{"email":"dan@c.example","password":"short"}'),
          '400 weak_password password', 'a short password: 400');
SELECT is(pg_temp.err('admin', 'POST', '/sites/' || :site || '/agents', '{}', '{"email":"dan@c.example"}'),
          '400 missing_field password', 'no password: 400');
SELECT is(pg_temp.err('admin', 'POST', '/sites/' || :site || '/agents', '{}', '{"email":"not an address","password":"long enough password"}'),
          '400 invalid_value email', 'not an e-mail address: 400');
SELECT is(pg_temp.err('admin', 'POST', '/sites/' || :site || '/agents', '{}', '{"email":"dan@c.example","password":"long enough password","role":"owner"}'),
          '400 invalid_value role', 'an unknown role: 400');
SELECT is(pg_temp.err('admin', 'POST', '/sites/' || :site || '/agents', '{}', '{"email":"dan@c.example","password":"long enough password","pin":1}'),
          '400 unknown_field pin', 'an unknown field: 400');
SELECT is(pg_temp.err('reader', 'GET', '/sites/' || :site || '/agents'), '403 forbidden', 'a read-scope token may not list agents');
SELECT is(pg_temp.err('reader', 'POST', '/sites/' || :site || '/agents', '{}', '{"email":"dan@c.example","password":"long enough password"}'),
          '403 forbidden', '... nor create them');
SELECT is(pg_temp.err('other', 'GET', '/sites/' || :site || '/agents'), '403 forbidden', 'another site''s token: 403');
SELECT is(pg_temp.err('admin', 'GET', '/sites/999999/agents'), '404 not_found', 'unknown site: 404');
SELECT is(pg_temp.err('admin', 'GET', '/sites/' || :other || '/agents/' || :ben), '404 not_found', 'an agent of another site: 404');

-- PATCH: a new password ends the agent's sessions; disabled true/false; unknown fields refused.
SELECT token AS ben_session FROM jd_agent_login(:'site_key', 'ben@c.example', 'Tr0ub4dor&3 horse') \gset
SELECT is((SELECT count(*) FROM jd_agent_session(:'ben_session')), 1::bigint, 'Ben has a console session');
SELECT is((SELECT body::jsonb ->> 'name' FROM pg_temp.api('admin', 'PATCH', '/sites/' || :site || '/agents/' || :ben, '{}',
          '{"name":"Benjamin","password":"a brand new password"}')), 'Benjamin', 'PATCH name and password');
SELECT is((SELECT count(*) FROM jd_agent_session(:'ben_session')), 0::bigint, '... the new password ended the session');
SELECT is((SELECT error FROM jd_agent_login(:'site_key', 'ben@c.example', 'Tr0ub4dor&3 horse')), 'invalid_credentials', '... the old password is refused');
SELECT is((SELECT error FROM jd_agent_login(:'site_key', 'ben@c.example', 'a brand new password')), NULL, '... the new one works');
SELECT is((SELECT body::jsonb -> 'disabled' FROM pg_temp.api('admin', 'PATCH', '/sites/' || :site || '/agents/' || :ben, '{}', '{"disabled":true}')),
          'true', 'PATCH disabled: true');
SELECT is((SELECT error FROM jd_agent_login(:'site_key', 'ben@c.example', 'a brand new password')), 'invalid_credentials', '... cannot sign in');
SELECT is((SELECT body::jsonb -> 'disabled' FROM pg_temp.api('admin', 'PATCH', '/sites/' || :site || '/agents/' || :ben, '{}',
          '{"disabled":false,"id":1,"online":true,"site_id":5,"disabled_at":null}')), 'false', 'PATCH disabled: false (read-only fields ignored)');
SELECT is((SELECT error FROM jd_agent_login(:'site_key', 'ben@c.example', 'a brand new password')), NULL, '... signs in again');
SELECT is(pg_temp.err('admin', 'PATCH', '/sites/' || :site || '/agents/' || :ben, '{}', '{"role":"boss"}'), '400 invalid_value role', 'PATCH a bad role');
SELECT is(pg_temp.err('admin', 'PATCH', '/sites/' || :site || '/agents/' || :ben, '{}', '{"password":"short"}'), '400 weak_password password', 'PATCH a weak password');
SELECT is(pg_temp.err('admin', 'PATCH', '/sites/' || :site || '/agents/' || :ben, '{}', '{"email":"ANNA@c.example"}'), '409 conflict email',
          'PATCH to another agent''s e-mail');
SELECT is(pg_temp.err('admin', 'PATCH', '/sites/' || :site || '/agents/' || :ben, '{}', '{"nickname":"B"}'), '400 unknown_field nickname', 'PATCH an unknown field');

-- DELETE disables (the account stays, its messages keep their author).
SELECT token AS anna_session FROM jd_agent_login(:'site_key', 'anna@c.example', 'correct horse battery') \gset
SELECT is((SELECT body::jsonb -> 'disabled' FROM pg_temp.api('admin', 'DELETE', '/sites/' || :site || '/agents/' || :anna)), 'true', 'DELETE disables Anna');
SELECT is((SELECT count(*) FROM jd_agent_session(:'anna_session')), 0::bigint, '... and ends her session');
SELECT is((SELECT count(*) FROM messages WHERE agent_id = :anna), 2::bigint, '... her messages keep their author');
SELECT is((SELECT body::jsonb ->> 'email' FROM pg_temp.api('admin', 'GET', '/sites/' || :site || '/agents/' || :anna)), 'anna@c.example', 'GET one agent');
SELECT is((SELECT status FROM pg_temp.api('mine', 'DELETE', '/sites/' || :site || '/agents/' || :anna)), 200, 'a site-bound admin token manages its site''s agents');

-- Passwords never reach the audit log.
SELECT is((SELECT array_agg(action ORDER BY id) FROM audit_log WHERE object_type = 'agent'),
          ARRAY['create', 'create', 'update', 'update', 'update', 'disable', 'disable'], 'agent changes are audited');
SELECT ok(NOT EXISTS (SELECT 1 FROM audit_log WHERE detail::text ~ 'Tr0ub4dor|brand new|long enough|correct horse'), '... without passwords');
SELECT is((SELECT detail FROM audit_log WHERE object_type = 'agent' AND action = 'create' ORDER BY id LIMIT 1),
          '{"name": "Ben", "role": "admin", "email": "ben@c.example", "password": "set"}', '... only that one was set');

SELECT * FROM finish();
ROLLBACK;
