-- pgTAP: erasure, access, retention of chats (sql/020_chat.sql).
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

-- Fixture: site A with one map, site B with its own (chat_fixture.psql).
\ir chat_fixture.psql
SELECT jd_agent_create(:site_a, 'anna@shop-a.example', 'Anna', 'agent', 'correct horse battery') AS anna \gset
-- Visitor R (two conversations, one session with a verified subject), visitor S (only an offline
-- conversation with R's e-mail), visitor T (untouched), and R's id on site B (untouched).
INSERT INTO respondents (site_id, id, email) VALUES
    (:site_a, '00000000-0000-4000-8000-0000000000a1', 'Rita@Example.com'),
    (:site_a, '00000000-0000-4000-8000-0000000000a2', NULL),
    (:site_a, '00000000-0000-4000-8000-0000000000a3', NULL),
    (:site_a, '00000000-0000-4000-8000-0000000000a4', NULL),
    (:site_b, '00000000-0000-4000-8000-0000000000a1', NULL);
INSERT INTO sessions (id, site_id, respondent_id, consent_mode, subject, verified) VALUES
    ('00000000-0000-4000-8000-0000000000b4', :site_a, '00000000-0000-4000-8000-0000000000a4', 'none-required', 'rita@example.com', true);
CREATE TEMP TABLE cv AS
SELECT 'r1' AS who, conversation_id AS id FROM jd_chat_open(:site_a, '00000000-0000-4000-8000-0000000000a1', NULL, NULL, '', NULL, NULL)
UNION ALL SELECT 'r2', conversation_id FROM jd_chat_open(:site_a, '00000000-0000-4000-8000-0000000000a1', NULL, NULL, 'x', NULL, NULL)
UNION ALL SELECT 's', conversation_id FROM jd_chat_open(:site_a, '00000000-0000-4000-8000-0000000000a2', NULL, 'rita@example.COM', '', NULL, NULL)
UNION ALL SELECT 't', conversation_id FROM jd_chat_open(:site_a, '00000000-0000-4000-8000-0000000000a3', NULL, 'tom@example.com', '', NULL, NULL)
UNION ALL SELECT 'v', conversation_id FROM jd_chat_open(:site_a, '00000000-0000-4000-8000-0000000000a4', '00000000-0000-4000-8000-0000000000b4', NULL, '', NULL, NULL)
UNION ALL SELECT 'b', conversation_id FROM jd_chat_open(:site_b, '00000000-0000-4000-8000-0000000000a1', NULL, NULL, '', NULL, NULL);
SELECT jd_chat_insert(jsonb_agg(jsonb_build_object('conversation_id', cv.id, 'site_id', c.site_id,
    'client_id', gen_random_uuid(), 'body', 'hello from ' || cv.who || ' ' || n, 'stage_id', CASE WHEN c.site_id = :site_a THEN :st_purchase END)))
FROM cv JOIN conversations c ON c.id = cv.id, generate_series(1, 3) n \g /dev/null
SELECT jd_chat_insert(jsonb_build_array(jsonb_build_object('conversation_id', id, 'site_id', :site_a,
    'client_id', gen_random_uuid(), 'sender', 'agent', 'agent_id', :anna, 'body', 'I see, Rita'))) FROM cv WHERE who = 'r1' \g /dev/null
SELECT jd_code_message(:anna, m.id, NULL, NULL, 2, NULL, NULL, NULL) FROM messages m JOIN cv ON cv.id = m.conversation_id
WHERE m.sender = 'visitor' AND m.seq = 1 AND cv.who <> 'b' \g /dev/null
SELECT jd_chat_rate(id, gen_random_uuid(), 2, 2) FROM cv WHERE who = 'r1' \g /dev/null
SELECT is(count(*), 4::bigint, 'fixture: the four conversations to erase have chat evidence') FROM chat_evidence WHERE site_id = :site_a AND emotion = 2
    AND conversation_id IN (SELECT id FROM cv WHERE who IN ('r1', 'r2', 's', 'v'));

-- Access first: everything of R's.
SELECT is(jsonb_array_length(jd_chat_access(:site_a, '00000000-0000-4000-8000-0000000000a1')), 2, 'access lists R''s two conversations');
SELECT is((SELECT sum(jsonb_array_length(c -> 'messages')) FROM jsonb_array_elements(jd_chat_access(:site_a,
          '00000000-0000-4000-8000-0000000000a1')) c), 7::bigint, 'with every message, agent replies included');

-- Erase R by id and e-mail: R's own conversations, the offline one left with that e-mail, the one of
-- the session whose verified subject is that e-mail (exactly, as jd_erase matches subjects; e-mails
-- match case-insensitively). T and site B are untouched.
SELECT jd_erase_chat(:site_a, '00000000-0000-4000-8000-0000000000a1', 'rita@example.com') AS er \gset
SELECT is((:'er'::jsonb - 'respondents'), '{"conversations": 4, "messages": 13, "codes": 4, "answers": 1}'::jsonb, 'erase_chat reports what it deleted');
SELECT is(count(*), 0::bigint, 'the end-of-chat rating is gone with its conversation')
FROM answers WHERE source = 'chat' AND respondent_id = '00000000-0000-4000-8000-0000000000a1' AND site_id = :site_a;
SELECT is((SELECT array_agg(x ORDER BY x) FROM jsonb_array_elements_text(:'er'::jsonb -> 'respondents') x),
          ARRAY['00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-0000000000a2', '00000000-0000-4000-8000-0000000000a4'],
          'and the respondent ids to pass to jd_erase');
SELECT is(count(*), 0::bigint, 'no conversation of the visitor is left') FROM conversations WHERE id IN (SELECT id FROM cv WHERE who IN ('r1', 'r2', 's', 'v'));
SELECT is(count(*), 0::bigint, 'no message is left') FROM messages WHERE conversation_id IN (SELECT id FROM cv WHERE who IN ('r1', 'r2', 's', 'v'));
SELECT is(count(*), 0::bigint, 'no code is left') FROM message_codes mc WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = mc.message_id);
SELECT is(count(*), 0::bigint, 'no chat evidence is left') FROM chat_evidence WHERE conversation_id IN (SELECT id FROM cv WHERE who <> 't');
SELECT ok(NOT EXISTS (SELECT 1 FROM messages WHERE body LIKE '%Rita%' OR body LIKE '%from r%' OR body LIKE '%from s%'),
          'none of the text is left');
SELECT is(count(*), 3::bigint, 'another visitor''s conversation is untouched') FROM messages WHERE conversation_id = (SELECT id FROM cv WHERE who = 't');
SELECT is(count(*), 3::bigint, 'the same respondent id on another site is untouched') FROM messages WHERE conversation_id = (SELECT id FROM cv WHERE who = 'b');
SELECT is(jd_erase_chat(:site_a, '00000000-0000-4000-8000-0000000000a1', 'rita@example.com'),
          '{"conversations": 0, "messages": 0, "codes": 0, "answers": 0, "respondents": []}'::jsonb, 'erasing again is a no-op');
SELECT is(jd_chat_access(:site_a, '00000000-0000-4000-8000-0000000000a1'), '[]'::jsonb, 'access finds nothing afterwards');
-- jd_erase (010) then erases the rest of the respondent, as documented.
SELECT lives_ok($$SELECT jd_erase($$ || :site_a || $$, '00000000-0000-4000-8000-0000000000a1', 'rita@example.com')$$,
                'jd_erase runs after jd_erase_chat');
SELECT ok(erased_at IS NOT NULL AND email IS NULL, 'and leaves its tombstone')
FROM respondents WHERE site_id = :site_a AND id = '00000000-0000-4000-8000-0000000000a1';

-- Retention and housekeeping.
UPDATE sites SET retention_days = 30 WHERE id = :site_a;
UPDATE conversations SET created_at = now() - interval '40 days', last_message_at = now() - interval '31 days'
WHERE id = (SELECT id FROM cv WHERE who = 't');
INSERT INTO agent_login_failures (site_key, email, failed_at) VALUES ('k', 'e', now() - interval '2 days'), ('k', 'e', now());
SELECT is(jd_chat_purge_expired(1000), 2, 'the purge deletes the expired conversation and the old failure');
SELECT is(count(*), 0::bigint, 'the expired conversation is gone') FROM conversations WHERE id = (SELECT id FROM cv WHERE who = 't');
SELECT is(count(*), 1::bigint, 'recent failures stay') FROM agent_login_failures WHERE site_key = 'k';
SELECT is(count(*), 1::bigint, 'site B (no retention) keeps its conversation') FROM conversations WHERE site_id = :site_b;

SELECT * FROM finish();
ROLLBACK;
