-- pgTAP: the privacy routes with chats (sql/022_chat_api.sql). POST /erase and POST
-- /respondents/{id}/erase call jd_erase_chat BEFORE jd_erase (jd_erase clears the e-mail and the
-- sessions that find a visitor's chats by e-mail; the reverse order, tried first as a control,
-- misses them), report chat counts next to jd_erase's unchanged ones, leave other visitors and
-- sites alone, are idempotent, audited without the e-mail; GET /respondents/{id} includes the
-- conversations; a visitor known only from a chat is found.
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

SELECT (jd_site_create('Private chat', '{https://p.example}', 'none-required', 'pgtap') ->> 'id') AS site \gset
SELECT (jd_site_create('Elsewhere', '{https://e.example}', 'none-required', 'pgtap') ->> 'id') AS other \gset
CREATE TEMP TABLE tok AS
SELECT jd_token_create('dpo', 'admin', NULL, NULL, 'pgtap') ->> 'token' AS admin,
       jd_token_create('analyst', 'read', NULL, NULL, 'pgtap') ->> 'token' AS reader,
       jd_token_create('other-site', 'admin', (SELECT key FROM sites WHERE id = :other), NULL, 'pgtap') ->> 'token' AS other;
SELECT (jd_apply_map(jsonb_build_object('site', (SELECT key FROM sites WHERE id = :site), 'name', 'M'), 'pgtap') ->> 'map_id') AS map \gset
SELECT jd_agent_create(:site, 'anna@p.example', 'Anna', 'agent', 'correct horse battery') AS anna \gset

-- Rita (a1, with her e-mail) chatted without giving an e-mail; a2 left an offline message with
-- Rita's e-mail; a4's session is verified as rita@example.com; a3 is someone else; a1's id also
-- exists on the other site; a9 is only known from a chat (its respondent row never arrived).
INSERT INTO respondents (site_id, id, email) VALUES
    (:site, '00000000-0000-4000-8000-0000000000a1', 'Rita@Example.com'),
    (:site, '00000000-0000-4000-8000-0000000000a2', NULL),
    (:site, '00000000-0000-4000-8000-0000000000a3', NULL),
    (:site, '00000000-0000-4000-8000-0000000000a4', NULL),
    (:other, '00000000-0000-4000-8000-0000000000a1', NULL);
INSERT INTO sessions (id, site_id, respondent_id, consent_mode, subject, verified) VALUES
    ('00000000-0000-4000-8000-0000000000b1', :site, '00000000-0000-4000-8000-0000000000a1', 'none-required', NULL, false),
    ('00000000-0000-4000-8000-0000000000b4', :site, '00000000-0000-4000-8000-0000000000a4', 'none-required', 'rita@example.com', true);
INSERT INTO answers (site_id, map_id, client_id, respondent_id, session_id, thought) VALUES
    (:site, :map, gen_random_uuid(), '00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-0000000000b1', 'mine'),
    (:site, :map, gen_random_uuid(), '00000000-0000-4000-8000-0000000000a2', NULL, 'offline visitor''s answer'),
    (:site, :map, gen_random_uuid(), '00000000-0000-4000-8000-0000000000a3', NULL, 'someone else');
CREATE TEMP TABLE cv AS
SELECT 'a1' AS who, conversation_id AS id FROM jd_chat_open(:site, '00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-0000000000b1', NULL, '', NULL, NULL)
UNION ALL SELECT 'a2', conversation_id FROM jd_chat_open(:site, '00000000-0000-4000-8000-0000000000a2', NULL, 'rita@example.COM', '', NULL, NULL)
UNION ALL SELECT 'a3', conversation_id FROM jd_chat_open(:site, '00000000-0000-4000-8000-0000000000a3', NULL, 'tom@example.com', '', NULL, NULL)
UNION ALL SELECT 'a4', conversation_id FROM jd_chat_open(:site, '00000000-0000-4000-8000-0000000000a4', '00000000-0000-4000-8000-0000000000b4', NULL, '', NULL, NULL)
UNION ALL SELECT 'a9', conversation_id FROM jd_chat_open(:site, '00000000-0000-4000-8000-0000000000a9', NULL, NULL, '', NULL, NULL)
UNION ALL SELECT 'other', conversation_id FROM jd_chat_open(:other, '00000000-0000-4000-8000-0000000000a1', NULL, NULL, '', NULL, NULL);
SELECT jd_chat_insert(jsonb_agg(jsonb_build_object('conversation_id', cv.id, 'site_id', c.site_id,
    'client_id', gen_random_uuid(), 'body', 'hello from ' || cv.who || ' #' || n)))
FROM cv JOIN conversations c ON c.id = cv.id, generate_series(1, 2) n \g /dev/null
SELECT jd_chat_insert(jsonb_build_array(
    jsonb_build_object('conversation_id', id, 'site_id', :site, 'client_id', gen_random_uuid(), 'sender', 'agent',
                       'agent_id', :anna, 'body', 'VIP: Rita', 'kind', 'note'))) FROM cv WHERE who = 'a1' \g /dev/null
SELECT jd_code_message(:anna, m.id, NULL, NULL, 2, NULL, NULL, NULL) FROM messages m JOIN cv ON cv.id = m.conversation_id
WHERE m.sender = 'visitor' AND m.seq = 1 AND cv.who IN ('a1', 'a2') \g /dev/null
SELECT jd_chat_rate(id, gen_random_uuid(), 2, 2) FROM cv WHERE who = 'a1' \g /dev/null

CREATE FUNCTION pg_temp.api(who text, m text, p text, b text DEFAULT NULL, q jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('status', a.status, 'type', a.content_type, 'body', a.body::jsonb)
      FROM tok, jd_api(m, p, q, b, CASE who WHEN 'admin' THEN tok.admin WHEN 'reader' THEN tok.reader ELSE tok.other END) a
$$;
CREATE FUNCTION pg_temp.left_of(who text) RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM messages WHERE conversation_id IN (SELECT id FROM cv WHERE cv.who = $1) $$;

-- Control: in the wrong order (jd_erase first) the e-mail no longer finds Rita's own chat nor the
-- one of the verified session.
SAVEPOINT wrong_order;
SELECT jd_erase(:site, NULL, 'rita@example.com') \g /dev/null
SELECT is(jd_erase_chat(:site, NULL, 'rita@example.com') -> 'conversations', '1',
          'control: jd_erase before jd_erase_chat finds only the offline conversation');
ROLLBACK TO SAVEPOINT wrong_order;

-- Right of access includes the conversations, notes too.
SELECT is((pg_temp.api('admin', 'GET', '/respondents/00000000-0000-4000-8000-0000000000a1', NULL, format('{"site":"%s"}', :site)::jsonb) -> 'status')::int,
          200, 'GET /respondents/{id}: 200');
SELECT is(jsonb_array_length(pg_temp.api('admin', 'GET', '/respondents/00000000-0000-4000-8000-0000000000a1', NULL,
          format('{"site":"%s"}', :site)::jsonb) #> '{body,conversations}'), 1, '... with the respondent''s conversation');
SELECT is((SELECT jsonb_agg(m ->> 'body' ORDER BY (m ->> 'seq')::int) FROM jsonb_array_elements(pg_temp.api('admin', 'GET',
          '/respondents/00000000-0000-4000-8000-0000000000a1', NULL, format('{"site":"%s"}', :site)::jsonb) #> '{body,conversations,0,messages}') m),
          '["hello from a1 #1", "hello from a1 #2", "VIP: Rita"]', '... every message, the private note included');
SELECT is(pg_temp.api('admin', 'GET', '/respondents/00000000-0000-4000-8000-0000000000a1', NULL, format('{"site":"%s"}', :site)::jsonb) #> '{body,answers,0,thought}',
          '"mine"', '... next to what jd_respondent_access returned before');
SELECT is(jsonb_array_length(pg_temp.api('admin', 'GET', '/respondents/00000000-0000-4000-8000-0000000000a9') #> '{body,conversations}'), 1,
          'a visitor known only from a chat is found (no respondent row)');
SELECT is((pg_temp.api('other', 'GET', '/respondents/00000000-0000-4000-8000-0000000000a9') -> 'status')::int, 404,
          'another site''s token does not find that visitor');
SELECT is((pg_temp.api('reader', 'GET', '/respondents/00000000-0000-4000-8000-0000000000a9') -> 'status')::int, 403,
          'a read-scope token cannot read personal data');

-- Erase by e-mail: Rita's own chat (found by respondents.email), the offline one (its e-mail) and
-- the verified session's (its subject); then jd_erase for Rita and the respondents of those chats.
SELECT is((pg_temp.api('other', 'POST', '/erase', format('{"email":"rita@example.com","site":%s}', :site)) -> 'status')::int, 403,
          'POST /erase in another site: 403');
SELECT is((pg_temp.api('reader', 'POST', '/erase', format('{"email":"rita@example.com","site":%s}', :site)) -> 'status')::int, 403,
          'POST /erase with a read token: 403');
SELECT pg_temp.api('admin', 'POST', '/erase', format('{"email":"rita@example.com","site":%s}', :site)) AS er \gset
SELECT is((:'er'::jsonb -> 'status')::int, 200, 'POST /erase: 200');
SELECT is(:'er'::jsonb #> '{body,chat}', '{"conversations": 3, "messages": 7, "codes": 2, "ratings": 1}',
          '... chat counts: three conversations, their messages, codes and the rating');
SELECT is(:'er'::jsonb #> '{body,erased}', '{"respondents": 3, "answers": 2, "touch_events": 0, "sessions": 2}',
          '... jd_erase''s counts, summed over Rita and the visitors whose chats carried her e-mail');
SELECT is(pg_temp.left_of('a1') + pg_temp.left_of('a2') + pg_temp.left_of('a4'), 0::bigint, 'none of their messages is left');
SELECT is(count(*), 0::bigint, 'no chat evidence of theirs is left') FROM chat_evidence WHERE site_id = :site;
SELECT is(count(*), 0::bigint, 'the rating answer is gone') FROM answers WHERE site_id = :site AND source = 'chat';
SELECT is(count(*), 3::bigint, 'a1, a2 and a4 are tombstoned')
FROM respondents WHERE site_id = :site AND erased_at IS NOT NULL AND email IS NULL;
SELECT is(pg_temp.left_of('a3'), 2::bigint, 'another visitor''s chat is untouched');
SELECT is((SELECT count(*) FROM answers WHERE thought = 'someone else'), 1::bigint, '... and their answer');
SELECT is(pg_temp.left_of('other'), 2::bigint, 'the same respondent id on another site is untouched');
SELECT is(pg_temp.api('admin', 'POST', '/erase', format('{"email":"rita@example.com","site":%s}', :site)) #> '{body}',
          jsonb_build_object('site_id', :site, 'erased', '{"respondents": 0, "answers": 0, "touch_events": 0, "sessions": 0}'::jsonb,
                             'chat', '{"conversations": 0, "messages": 0, "codes": 0, "ratings": 0}'::jsonb),
          'erasing again reports zeros');

-- Erase by id, including a visitor known only from a chat.
SELECT pg_temp.api('admin', 'POST', '/respondents/00000000-0000-4000-8000-0000000000a9/erase') AS er9 \gset
SELECT is(:'er9'::jsonb #> '{body,chat}', '{"conversations": 1, "messages": 2, "codes": 0, "ratings": 0}',
          'POST /respondents/{id}/erase erases the chat');
SELECT is(:'er9'::jsonb #> '{body,erased}', '{"respondents": 0, "answers": 0, "touch_events": 0, "sessions": 0}',
          '... next to jd_erase''s counts, in their old shape');
SELECT is(pg_temp.left_of('a9'), 0::bigint, '... nothing of it is left');
SELECT is((pg_temp.api('admin', 'POST', '/respondents/00000000-0000-4000-8000-0000000000a9/erase') -> 'status')::int, 404,
          'once erased, a chat-only visitor is unknown (404)');
SELECT is((pg_temp.api('other', 'POST', '/respondents/00000000-0000-4000-8000-0000000000a3/erase') -> 'status')::int, 404,
          'another site''s token cannot erase');
SELECT is(pg_temp.left_of('a3'), 2::bigint, '... and nothing was erased');
SELECT is(pg_temp.api('admin', 'POST', '/respondents/00000000-0000-4000-8000-0000000000a3/erase') #> '{body,chat,conversations}', '1',
          'erasing a3 by id takes its chat');

-- Audit: counts, never the e-mail.
SELECT is((SELECT detail -> 'chat' FROM audit_log WHERE action = 'erase' AND object_id IS NULL ORDER BY id LIMIT 1),
          '{"conversations": 3, "messages": 7, "codes": 2, "ratings": 1}', 'the erasure is audited with the chat counts');
SELECT ok(NOT EXISTS (SELECT 1 FROM audit_log WHERE detail::text ILIKE '%rita%'), 'the audit log does not keep the e-mail');

-- The function the routes share.
SELECT is(jd_erase_respondent(:site, '00000000-0000-4000-8000-0000000000a1') -> 'chat',
          '{"conversations": 0, "messages": 0, "codes": 0, "ratings": 0}', 'jd_erase_respondent is idempotent');

SELECT * FROM finish();
ROLLBACK;
