-- pgTAP: visitor side: open, token, resume, notes hidden, poll, offline, rating (sql/020_chat.sql).
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

-- Fixture: site A with one map, site B with its own (chat_fixture.psql).
\ir chat_fixture.psql
SELECT jd_agent_create(:site_a, 'anna@shop-a.example', 'Anna', 'agent', 'correct horse battery') AS anna \gset
INSERT INTO respondents (site_id, id) VALUES (:site_a, '00000000-0000-4000-8000-0000000000a1');
INSERT INTO sessions (id, site_id, respondent_id, consent_mode, consent)
VALUES ('00000000-0000-4000-8000-0000000000b1', :site_a, '00000000-0000-4000-8000-0000000000a1', 'none-required', true);

-- Opening.
SELECT conversation_id AS conv, token, created FROM jd_chat_open(:site_a, '00000000-0000-4000-8000-0000000000a1',
    '00000000-0000-4000-8000-0000000000b1', 'Visitor@Example.com', 'https://a.example/checkout',
    :st_purchase, :tp_website, 'cccccccc-0000-4000-8000-000000000001') \gset
SELECT ok(:'created'::boolean, 'chat.open creates a conversation');
SELECT matches(:'token'::text, '^jdc_[A-Za-z0-9_-]{43}$', 'the token is 32 random bytes in base64url');
SELECT is(token_hash, sha256(convert_to(:'token', 'UTF8')), 'only the token''s sha256 is stored')
FROM conversations WHERE id = :'conv';
SELECT ok(NOT EXISTS (SELECT 1 FROM conversations c WHERE c::text LIKE '%' || :'token' || '%'),
          'the token itself is stored nowhere');
SELECT is(row(status, visitor_email, page_url, stage_id, touchpoint_id, last_seq)::text,
          row('waiting', 'Visitor@Example.com', 'https://a.example/checkout', :st_purchase, :tp_website, 0)::text,
          'the conversation starts waiting, with the visitor''s context') FROM conversations WHERE id = :'conv';
SELECT isnt((SELECT token FROM jd_chat_open(:site_a, NULL, NULL, NULL, '', NULL, NULL)), :'token'::text,
            'every conversation gets its own token');
SELECT throws_ok(format($$SELECT * FROM jd_chat_open(%s, NULL, NULL, 'not an address', '', NULL, NULL)$$, :site_a),
                 'JD400', NULL, 'a malformed e-mail is refused');

-- A resent chat.open: same conversation, fresh token, the first token stops working.
SELECT conversation_id AS conv2, token AS token2, created AS created2 FROM jd_chat_open(:site_a,
    '00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-0000000000b1', NULL, 'https://a.example/checkout',
    :st_purchase, :tp_website, 'cccccccc-0000-4000-8000-000000000001') \gset
SELECT is(:'conv2'::text, :'conv', 'a resent open finds the same conversation');
SELECT ok(NOT :'created2'::boolean, 'and says it was not created');
SELECT isnt(:'token2'::text, :'token', 'with a fresh token');
SELECT is(visitor_email, 'Visitor@Example.com', 'a resend without e-mail keeps the e-mail') FROM conversations WHERE id = :'conv';
SELECT throws_ok(format($$SELECT * FROM jd_chat_resume(%L, %L, 0)$$, :'conv', :'token'), 'JD403', NULL,
                 'the replaced token no longer resumes');
SELECT throws_ok(format($$SELECT * FROM jd_chat_open(%s, gen_random_uuid(), NULL, NULL, '', NULL, NULL,
                          'cccccccc-0000-4000-8000-000000000001')$$, :site_a),
                 'JD409', NULL, 'another respondent cannot take over a conversation by its open id');
SELECT is((SELECT count(*) FROM conversations WHERE open_client_id = 'cccccccc-0000-4000-8000-000000000001'), 1::bigint,
          'still one conversation for that open id');

-- A conversation: visitor, agent reply, private note, visitor.
SELECT jd_chat_insert(jsonb_build_array(
    jsonb_build_object('conversation_id', :'conv', 'site_id', :site_a, 'client_id', 'dddddddd-0000-4000-8000-000000000001',
                       'body', 'Where is my parcel?', 'page_url', 'https://a.example/checkout', 'stage_id', :st_purchase),
    jsonb_build_object('conversation_id', :'conv', 'site_id', :site_a, 'client_id', 'dddddddd-0000-4000-8000-000000000002',
                       'sender', 'agent', 'agent_id', :anna, 'body', 'Let me check.'),
    jsonb_build_object('conversation_id', :'conv', 'site_id', :site_a, 'client_id', 'dddddddd-0000-4000-8000-000000000003',
                       'sender', 'agent', 'agent_id', :anna, 'kind', 'note', 'body', 'Customer sounds annoyed; VIP'),
    jsonb_build_object('conversation_id', :'conv', 'site_id', :site_a, 'client_id', 'dddddddd-0000-4000-8000-000000000004',
                       'body', 'Thanks'))) \g /dev/null

-- Resuming.
SELECT is((SELECT array_agg((j ->> 'seq')::int) FROM jd_chat_resume(:'conv', :'token2', 0) j), ARRAY[1, 2, 4],
          'resume with the right token returns the messages, without the note');
SELECT is((SELECT array_agg((j ->> 'seq')::int) FROM jd_chat_resume(:'conv', :'token2', 2) j), ARRAY[4],
          'resume from after_seq returns only what came later');
SELECT is((SELECT count(*) FROM jd_chat_resume(:'conv', :'token2', 4)), 0::bigint,
          'resume when up to date returns nothing');
SELECT throws_ok(format($$SELECT * FROM jd_chat_resume(%L, 'jdc_wrong', 0)$$, :'conv'), 'JD403',
                 'unknown conversation or wrong token', 'a wrong token is refused');
SELECT throws_ok(format($$SELECT * FROM jd_chat_resume(%L, NULL, 0)$$, :'conv'), 'JD403',
                 'unknown conversation or wrong token', 'no token is refused');
SELECT throws_ok(format($$SELECT * FROM jd_chat_resume(%L, %L, 0)$$, gen_random_uuid(), :'token2'), 'JD403',
                 'unknown conversation or wrong token', 'an unknown conversation gets the same answer');
SELECT throws_ok(format($$SELECT * FROM jd_chat_resume(%L, %L, 0, %s)$$, :'conv', :'token2', :site_b), 'JD403',
                 'unknown conversation or wrong token', 'the right token on another site''s connection is refused');
SELECT is((SELECT count(*) FROM jd_chat_resume(:'conv', :'token2', 0, :site_a)), 3::bigint,
          'the right token on its own site works');

-- What a visitor and an agent see.
SELECT ok(NOT EXISTS (SELECT 1 FROM jd_chat_fetch(:'conv', 0, false) j WHERE j ->> 'kind' = 'note'),
          'fetch for a visitor has no note');
SELECT ok(EXISTS (SELECT 1 FROM jd_chat_fetch(:'conv', 0, true) j WHERE j ->> 'kind' = 'note'),
          'fetch for an agent has the note');
SELECT ok(NOT EXISTS (SELECT 1 FROM jsonb_array_elements(jd_chat_poll(jsonb_build_array(jsonb_build_object(
              'conversation', :'conv', 'after_seq', 0, 'for_agent', false))) -> 0 -> 'messages') m
          WHERE m ->> 'kind' = 'note'), 'poll for a visitor has no note');
SELECT is(j - 'at', jsonb_build_object('conversation', :'conv', 'seq', 2, 'id', 'dddddddd-0000-4000-8000-000000000002',
          'sender', 'agent', 'agent', jsonb_build_object('name', 'Anna'), 'kind', 'text', 'body', 'Let me check.'),
          'a visitor sees an agent by name only, and no database id')
FROM jd_chat_fetch(:'conv', 1, false) j WHERE (j ->> 'seq')::int = 2;
SELECT is(j -> 'agent', jsonb_build_object('id', :anna, 'name', 'Anna'), 'an agent sees the author''s id')
FROM jd_chat_fetch(:'conv', 1, true) j WHERE (j ->> 'seq')::int = 2;
SELECT ok(j ? 'message_id', 'an agent gets the message id (for coding)')
FROM jd_chat_fetch(:'conv', 0, true, 1) j;
SELECT is(j ->> 'stage', 'purchase', 'a message carries its journey context as slugs')
FROM jd_chat_fetch(:'conv', 0, false, 1) j;
SELECT matches(j ->> 'at', '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$', 'timestamps are RFC 3339 UTC')
FROM jd_chat_fetch(:'conv', 0, false, 1) j;

-- Poll: state with every subscription, "more" when the limit cut the list, null state when gone.
SELECT jd_chat_poll(jsonb_build_array(
    jsonb_build_object('conversation', :'conv', 'after_seq', 0, 'for_agent', true, 'limit', 2),
    jsonb_build_object('conversation', gen_random_uuid(), 'after_seq', 0))) AS poll \gset
SELECT is(jsonb_array_length(:'poll'::jsonb -> 0 -> 'messages'), 2, 'poll honours the limit');
SELECT is(:'poll'::jsonb -> 0 -> 'more', 'true'::jsonb, 'and says there is more');
SELECT is(:'poll'::jsonb -> 0 -> 'state' ->> 'last_seq', '4', 'the state carries last_seq');
SELECT is(:'poll'::jsonb -> 0 -> 'state' ->> 'status', 'open', 'and the status');
SELECT is(:'poll'::jsonb -> 1 -> 'state', 'null'::jsonb, 'an unknown conversation has a null state');
SELECT is(jd_chat_poll(jsonb_build_array(jsonb_build_object('conversation', :'conv', 'messages', false))) -> 0 -> 'messages',
          '[]'::jsonb, 'poll can ask for the state only');

-- Offline message and e-mail.
SELECT conversation_id AS off FROM jd_chat_open(:site_a, gen_random_uuid(), NULL, NULL, 'https://a.example/', NULL, NULL) \gset
SELECT lives_ok(format($$SELECT jd_chat_insert('[{"conversation_id":"%s","site_id":%s,"client_id":"%s","kind":"offline","body":"Call me back"}]')$$,
                       :'off', :site_a, gen_random_uuid()), 'a visitor leaves an offline message');
SELECT lives_ok(format($$SELECT jd_chat_set_email(%L, 'later@example.com')$$, :'off'), 'and an e-mail');
SELECT is(visitor_email, 'later@example.com', 'the e-mail is kept on the conversation') FROM conversations WHERE id = :'off';
SELECT throws_ok(format($$SELECT jd_chat_set_email(%L, 'nope')$$, :'off'), 'JD400', NULL, 'a bad e-mail is refused');

-- The end-of-chat rating is an answer with source chat, idempotent by client id.
SELECT jd_chat_rate(:'conv', 'eeeeeeee-0000-4000-8000-000000000001', 2, 3, 'Slow answer') AS rate \gset
SELECT is(:'rate'::jsonb ->> 'stored', 'true', 'a rating is stored');
SELECT is(row(source, map_id, stage_id, touchpoint_id, emotion, score, thought, respondent_id, session_id)::text,
          row('chat', :map_a, :st_purchase, NULL::bigint, 2, 3, 'Slow answer', '00000000-0000-4000-8000-0000000000a1'::uuid,
              '00000000-0000-4000-8000-0000000000b1'::uuid)::text,
          'as an answer for the chat''s stage (from the visitor''s last message)')
FROM answers WHERE client_id = 'eeeeeeee-0000-4000-8000-000000000001';
SELECT is(jd_chat_rate(:'conv', 'eeeeeeee-0000-4000-8000-000000000001', 2, 3) ->> 'stored', 'false',
          'a resent rating is not stored twice');
SELECT is(count(*), 1::bigint, 'one answer') FROM answers WHERE client_id = 'eeeeeeee-0000-4000-8000-000000000001';
SELECT throws_ok(format($$SELECT jd_chat_rate(%L, gen_random_uuid(), 6, NULL)$$, :'conv'), 'JD400', NULL,
                 'an emotion outside 1..5 is refused');

SELECT * FROM finish();
ROLLBACK;
