-- pgTAP: research coding of messages and spans, revisions with history, chat_evidence (sql/020_chat.sql).
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

-- Fixture: site A with one map, site B with its own (chat_fixture.psql).
\ir chat_fixture.psql
SELECT jd_agent_create(:site_a, 'anna@shop-a.example', 'Anna', 'agent', 'correct horse battery') AS anna \gset
SELECT jd_agent_create(:site_a, 'carl@shop-a.example', 'Carl', 'agent', 'carl''s long password') AS carl \gset
SELECT jd_agent_create(:site_b, 'bob@shop-b.example', 'Bob', 'agent', 'another long secret') AS bob \gset
INSERT INTO respondents (site_id, id) VALUES (:site_a, '00000000-0000-4000-8000-0000000000a1');
INSERT INTO sessions (id, site_id, respondent_id, consent_mode, consent, persona_id)
VALUES ('00000000-0000-4000-8000-0000000000b1', :site_a, '00000000-0000-4000-8000-0000000000a1', 'none-required', true,
        (SELECT id FROM personas WHERE slug = 'parent'));
SELECT conversation_id AS conv FROM jd_chat_open(:site_a, '00000000-0000-4000-8000-0000000000a1',
    '00000000-0000-4000-8000-0000000000b1', NULL, 'https://a.example/cart', :st_consideration, NULL) \gset
SELECT jd_chat_insert(jsonb_build_array(
    jsonb_build_object('conversation_id', :'conv', 'site_id', :site_a, 'client_id', 'dddddddd-0000-4000-8000-000000000001',
                       'body', 'Shipping costs 12 euros, that is crazy. And the site is so slow.',
                       'page_url', 'https://a.example/cart', 'stage_id', :st_purchase, 'touchpoint_id', :tp_website),
    jsonb_build_object('conversation_id', :'conv', 'site_id', :site_a, 'client_id', 'dddddddd-0000-4000-8000-000000000002',
                       'sender', 'agent', 'agent_id', :anna, 'body', 'Sorry about that.'),
    jsonb_build_object('conversation_id', :'conv', 'site_id', :site_a, 'client_id', 'dddddddd-0000-4000-8000-000000000003',
                       'body', 'ok 👍 thanks'))) \g /dev/null
SELECT id AS m1 FROM messages WHERE client_id = 'dddddddd-0000-4000-8000-000000000001' \gset
SELECT id AS m2 FROM messages WHERE client_id = 'dddddddd-0000-4000-8000-000000000002' \gset
SELECT id AS m3 FROM messages WHERE client_id = 'dddddddd-0000-4000-8000-000000000003' \gset

-- Coding a span and the whole message.
SELECT jd_code_message(:anna, :m1, 0, 31, 1, ARRAY['shipping-cost'], 'purchase', 'website') AS c1 \gset
SELECT is(:'c1'::jsonb ->> 'text', 'Shipping costs 12 euros, that i', 'a span code carries the span''s text');
SELECT is(:'c1'::jsonb -> 'obstacles', '["shipping-cost"]'::jsonb, 'obstacle slugs are resolved and shown back');
SELECT is(:'c1'::jsonb -> 'coder', jsonb_build_object('id', :anna, 'name', 'Anna'), 'the coder is recorded');
SELECT ok((:'c1'::jsonb ->> 'created_at') IS NOT NULL, 'and when');
SELECT is(row(map_id, emotion, obstacle_ids, stage_id, touchpoint_id, coder_id)::text,
          row(:map_a, 1, (SELECT array_agg(id) FROM obstacles WHERE slug = 'shipping-cost'), :st_purchase, :tp_website, :anna)::text,
          'the code row holds ids') FROM message_codes WHERE id = (:'c1'::jsonb ->> 'id')::bigint;
SELECT jd_code_message(:anna, :m1, 44, 64, 2, ARRAY['slow-site'], NULL, NULL) AS c2 \gset
SELECT is(:'c2'::jsonb ->> 'text', 'the site is so slow.', 'a second span of the same message');
SELECT jd_code_message(:carl, :m3, NULL, NULL, 4, NULL, NULL, NULL) AS c3 \gset
SELECT is(:'c3'::jsonb ->> 'text', 'ok 👍 thanks', 'a whole-message code carries the whole text');
SELECT lives_ok(format($$SELECT jd_code_message(%s, %s, 3, 4, 5, NULL, NULL, NULL)$$, :carl, :m3),
                'spans count code points: the emoji is one character');
SELECT is(substr(body, 4, 1), '👍', 'position 3 is the emoji') FROM messages WHERE id = :m3;

-- Validation.
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, 0, 200, 1, NULL, NULL, NULL)$$, :anna, :m1), 'JD400', NULL,
                 'a span past the end of the body is refused');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, 5, 5, 1, NULL, NULL, NULL)$$, :anna, :m1), 'JD400', NULL,
                 'an empty span is refused');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, -1, 5, 1, NULL, NULL, NULL)$$, :anna, :m1), 'JD400', NULL,
                 'a negative start is refused');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, 5, NULL, 1, NULL, NULL, NULL)$$, :anna, :m1), 'JD400', NULL,
                 'a span needs both ends');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, NULL, NULL, 6, NULL, NULL, NULL)$$, :anna, :m1), 'JD400', NULL,
                 'an emotion outside 1..5 is refused');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, NULL, NULL, NULL, ARRAY['shipping-cost', 'nope', 'b-only'], NULL, NULL)$$, :anna, :m1),
                 'JD400', 'not in the map''s codebook: b-only, nope', 'unknown obstacle slugs are named (another map''s too)');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, NULL, NULL, 3, NULL, 'checkout', NULL)$$, :anna, :m1), 'JD400', NULL,
                 'an unknown stage slug is refused');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, NULL, NULL, 3, NULL, NULL, 'phone')$$, :anna, :m1), 'JD400', NULL,
                 'an unknown touchpoint slug is refused');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, NULL, NULL, 3, NULL, NULL, NULL, 'nobody')$$, :anna, :m1), 'JD400', NULL,
                 'an unknown persona slug is refused');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, NULL, NULL, NULL, NULL, NULL, NULL)$$, :anna, :m1), 'JD400', NULL,
                 'an empty code is refused');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, NULL, NULL, 3, NULL, NULL, NULL)$$, :anna, :m2), 'JD409', NULL,
                 'agent messages are not coded');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, NULL, NULL, 3, NULL, NULL, NULL)$$, :bob, :m1), 'JD404', NULL,
                 'an agent of another site cannot code (or see) the message');
-- A second map on the site: the map must be named unless the message's stage decides it.
INSERT INTO maps (site_id, slug, name) VALUES (:site_a, 'second', 'Second') RETURNING id AS map_a2 \gset
INSERT INTO stages (map_id, slug, name) VALUES (:map_a2, 'onboarding', 'Onboarding');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, NULL, NULL, 3, NULL, NULL, NULL)$$, :carl, :m3), 'JD400', NULL,
                 'with two maps and no stage on the message, the map must be named');
SELECT is(jd_code_message(:carl, :m3, NULL, NULL, 3, NULL, 'onboarding', NULL, NULL, 'second') ->> 'map', 'second',
          'a named map is used');
SELECT is(jd_code_message(:carl, :m1, NULL, NULL, 3, NULL, NULL, NULL) ->> 'map', 'main',
          'otherwise the map of the message''s stage');
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, NULL, NULL, 3, NULL, 'purchase', NULL, NULL, 'second')$$, :carl, :m3),
                 'JD400', NULL, 'slugs are checked against the chosen map');
DELETE FROM message_codes WHERE map_id = :map_a2 OR id > (:'c3'::jsonb ->> 'id')::bigint;
DELETE FROM maps WHERE id = :map_a2;

-- Revisions keep history.
SELECT codes_version AS v0 FROM conversations WHERE id = :'conv' \gset
SELECT jd_code_revise(:carl, (:'c1'::jsonb ->> 'id')::bigint, 0, 23, 2, ARRAY['shipping-cost'], 'purchase', 'website') AS c1r \gset
SELECT is((:'c1r'::jsonb ->> 'revises')::bigint, (:'c1'::jsonb ->> 'id')::bigint, 'a revision names the code it revises');
SELECT is(row(superseded_by, superseded_at IS NOT NULL, emotion, span_end)::text,
          row((:'c1r'::jsonb ->> 'id')::bigint, true, 1, 31)::text,
          'the old code keeps its values and points to its successor') FROM message_codes WHERE id = (:'c1'::jsonb ->> 'id')::bigint;
SELECT is(row(superseded_at, emotion, span_end, coder_id)::text, row(NULL::timestamptz, 2, 23, :carl)::text,
          'the new code is current, with its own coder') FROM message_codes WHERE id = (:'c1r'::jsonb ->> 'id')::bigint;
SELECT is(count(*), 2::bigint, 'both rows are kept') FROM message_codes WHERE message_id = :m1 AND span_start = 0;
SELECT throws_ok(format($$SELECT jd_code_revise(%s, %s, NULL, NULL, 3, NULL, NULL, NULL)$$, :anna, :'c1'::jsonb ->> 'id'),
                 'JD409', NULL, 'a superseded code cannot be revised again');
SELECT throws_ok(format($$SELECT jd_code_revise(%s, %s, NULL, NULL, 3, NULL, NULL, NULL)$$, :bob, :'c1r'::jsonb ->> 'id'),
                 'JD404', NULL, 'an agent of another site cannot revise');
SELECT ok(codes_version > :v0, 'a revision bumps the conversation''s codes_version') FROM conversations WHERE id = :'conv';
SELECT is(jsonb_array_length(jd_chat_codes(:'conv')), 3, 'three current codes in the conversation');
SELECT is(jsonb_array_length(jd_chat_codes(:'conv', true)), 4, 'four with history');

-- Console frame ids make create and revise idempotent.
SELECT jd_code_message(:anna, :m1, 4, 14, 3, NULL, NULL, NULL, NULL, NULL, NULL, 'ffffffff-0000-4000-8000-000000000001') AS k1 \gset
SELECT is(jd_code_message(:anna, :m1, 4, 14, 3, NULL, NULL, NULL, NULL, NULL, NULL, 'ffffffff-0000-4000-8000-000000000001'),
          :'k1'::jsonb, 'a resent code.create returns the same code');
SELECT is(count(*), 1::bigint, 'and makes no second row') FROM message_codes WHERE client_id = 'ffffffff-0000-4000-8000-000000000001';
SELECT throws_ok(format($$SELECT jd_code_message(%s, %s, 4, 14, 3, NULL, NULL, NULL, NULL, NULL, NULL, 'ffffffff-0000-4000-8000-000000000001')$$,
                        :bob, :m1), 'JD404', NULL, 'another site''s agent cannot read a code through its frame id');
SELECT jd_code_revise(:anna, (:'k1'::jsonb ->> 'id')::bigint, 4, 14, 4, NULL, NULL, NULL, NULL, NULL, 'ffffffff-0000-4000-8000-000000000002') AS k2 \gset
SELECT is(jd_code_revise(:anna, (:'k1'::jsonb ->> 'id')::bigint, 4, 14, 4, NULL, NULL, NULL, NULL, NULL, 'ffffffff-0000-4000-8000-000000000002'),
          :'k2'::jsonb, 'a resent code.revise returns the same revision instead of 409');
SELECT is(count(*), 2::bigint, 'two rows in that history') FROM message_codes WHERE message_id = :m1 AND span_start = 4;
DELETE FROM message_codes WHERE message_id = :m1 AND span_start = 4;

-- chat_evidence: only current codes, one row per message and span.
SELECT is(count(*), 3::bigint, 'three evidence rows') FROM chat_evidence WHERE conversation_id = :'conv';
SELECT is(row(map_id, persona_id, stage_id, touchpoint_id, emotion, thought, source, evidence_id, respondent_id)::text,
          row(:map_a, (SELECT id FROM personas WHERE slug = 'parent'), :st_purchase, :tp_website, 2, 'Shipping costs 12 euros',
              'chat', 'message:' || :m1, '00000000-0000-4000-8000-0000000000a1'::uuid)::text,
          'a revised code shows its latest values, shaped like an answer')
FROM chat_evidence WHERE code_id = (:'c1r'::jsonb ->> 'id')::bigint;
SELECT ok(NOT EXISTS (SELECT 1 FROM chat_evidence WHERE code_id = (:'c1'::jsonb ->> 'id')::bigint), 'the superseded code is not evidence');
SELECT is(row(stage_id, touchpoint_id)::text, row(:st_purchase, :tp_website)::text,
          'a code without stage/touchpoint falls back to the message''s journey context')
FROM chat_evidence WHERE code_id = (:'c2'::jsonb ->> 'id')::bigint;
-- Two coders on the same span: the later code wins.
SELECT jd_code_message(:anna, :m3, NULL, NULL, 5, NULL, NULL, NULL) AS c3b \gset
SELECT is(count(*), 1::bigint, 'one evidence row per message and span') FROM chat_evidence WHERE message_id = :m3;
SELECT is(emotion, 5::smallint, 'the latest code of that span') FROM chat_evidence WHERE message_id = :m3;
SELECT jd_code_retract(:anna, (:'c3b'::jsonb ->> 'id')::bigint) \g /dev/null
SELECT is(emotion, 4::smallint, 'after a retraction the earlier code counts again') FROM chat_evidence WHERE message_id = :m3;
SELECT ok(superseded_at IS NOT NULL AND superseded_by IS NULL, 'a retraction keeps the row')
FROM message_codes WHERE id = (:'c3b'::jsonb ->> 'id')::bigint;
SELECT is(jd_code_retract(:anna, (:'c3b'::jsonb ->> 'id')::bigint) ->> 'id', :'c3b'::jsonb ->> 'id',
          'retracting again (a resend) returns the retracted code');
SELECT throws_ok(format($$SELECT jd_code_retract(%s, %s)$$, :anna, :'c1'::jsonb ->> 'id'), 'JD409', NULL,
                 'a revised code cannot be retracted');
-- Redaction follows the site setting; erased respondents and opt-in without consent are left out.
UPDATE messages SET body = 'Call me on +44 20 7946 0958 about the 12 euros' WHERE id = :m3;
UPDATE sites SET redact = 'export' WHERE id = :site_a;
SELECT is(thought, 'Call me on [phone] about the 12 euros', 'thought is masked when the site redacts') FROM chat_evidence WHERE message_id = :m3;
UPDATE sites SET redact = 'off', consent_mode = 'opt-in' WHERE id = :site_a;
UPDATE sessions SET consent = false WHERE id = '00000000-0000-4000-8000-0000000000b1';
SELECT is(count(*), 0::bigint, 'no evidence from an opt-in session without consent') FROM chat_evidence WHERE conversation_id = :'conv';
UPDATE sessions SET consent = true WHERE id = '00000000-0000-4000-8000-0000000000b1';
SELECT is(count(*), 3::bigint, 'with consent it is back') FROM chat_evidence WHERE conversation_id = :'conv';
UPDATE respondents SET erased_at = now() WHERE id = '00000000-0000-4000-8000-0000000000a1';
SELECT is(count(*), 0::bigint, 'no evidence from an erased respondent') FROM chat_evidence WHERE conversation_id = :'conv';
-- The view has the columns the export aggregates from answers, with the same types.
SELECT is(ce.data_type, a.data_type, 'chat_evidence.' || ce.column_name || ' has the answers type')
FROM information_schema.columns ce
JOIN information_schema.columns a ON a.table_name = 'answers' AND a.column_name = ce.column_name
WHERE ce.table_name = 'chat_evidence'
  AND ce.column_name IN ('site_id', 'map_id', 'persona_id', 'stage_id', 'touchpoint_id', 'emotion', 'obstacle_ids',
                         'thought', 'source', 'respondent_id', 'session_id', 'created_at', 'score', 'goal_reached',
                         'survey_id', 'question_id');

SELECT * FROM finish();
ROLLBACK;
