-- pgTAP: agent inbox, conversation access, receipts, typing, close (sql/020_chat.sql).
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

-- Fixture: site A with one map, site B with its own (chat_fixture.psql).
\ir chat_fixture.psql
SELECT jd_agent_create(:site_a, 'anna@shop-a.example', 'Anna', 'agent', 'correct horse battery') AS anna \gset
SELECT jd_agent_create(:site_b, 'bob@shop-b.example', 'Bob', 'agent', 'another long secret') AS bob \gset
INSERT INTO respondents (site_id, id) VALUES (:site_a, '00000000-0000-4000-8000-0000000000a1');
INSERT INTO sessions (id, site_id, respondent_id, consent_mode)
VALUES ('00000000-0000-4000-8000-0000000000b1', :site_a, '00000000-0000-4000-8000-0000000000a1', 'none-required');
INSERT INTO touch_events (site_id, client_id, session_id, respondent_id, kind, name, url, stage_id, created_at)
SELECT :site_a, gen_random_uuid(), '00000000-0000-4000-8000-0000000000b1', '00000000-0000-4000-8000-0000000000a1',
       'pageview', '', 'https://a.example/p' || i, CASE WHEN i > 20 THEN :st_purchase ELSE :st_consideration END,
       now() - make_interval(mins => 30 - i)
FROM generate_series(1, 25) i;
SELECT conversation_id AS conv FROM jd_chat_open(:site_a, '00000000-0000-4000-8000-0000000000a1',
    '00000000-0000-4000-8000-0000000000b1', 'v@example.com', 'https://a.example/start', :st_consideration, NULL) \gset
SELECT conversation_id AS conv2 FROM jd_chat_open(:site_a, gen_random_uuid(), NULL, NULL, 'https://a.example/two', NULL, NULL) \gset
SELECT conversation_id AS conv3 FROM jd_chat_open(:site_a, gen_random_uuid(), NULL, NULL, 'https://a.example/three', NULL, NULL) \gset
SELECT conversation_id AS conv_b FROM jd_chat_open(:site_b, gen_random_uuid(), NULL, NULL, 'https://b.example/', NULL, NULL) \gset
CREATE FUNCTION pg_temp.m(conv uuid, site bigint, body text, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('conversation_id', $1, 'site_id', $2, 'client_id', gen_random_uuid(), 'body', $3) || $4 $$;
SELECT jd_chat_insert(jsonb_build_array(
    pg_temp.m(:'conv', :site_a, 'Hi, a question about delivery', jsonb_build_object('page_url', 'https://a.example/cart', 'stage_id', :st_purchase, 'touchpoint_id', :tp_website)),
    pg_temp.m(:'conv', :site_a, 'Sure, what is it?', jsonb_build_object('sender', 'agent', 'agent_id', :anna)),
    pg_temp.m(:'conv', :site_a, 'Does it ship on Sunday?'),
    pg_temp.m(:'conv', :site_a, 'check the carrier', jsonb_build_object('sender', 'agent', 'agent_id', :anna, 'kind', 'note')),
    pg_temp.m(:'conv2', :site_a, 'Anyone there?'),
    pg_temp.m(:'conv_b', :site_b, 'B question'))) \g /dev/null
SELECT jd_chat_close(:'conv3', :anna) \g /dev/null

-- Inbox.
SELECT jd_agent_inbox(:anna) AS inbox \gset
SELECT is((:'inbox'::jsonb ->> 'total')::int, 2, 'the default inbox has the open and waiting conversations');
SELECT is((SELECT array_agg(i ->> 'status' ORDER BY i ->> 'status') FROM jsonb_array_elements(:'inbox'::jsonb -> 'items') i),
          ARRAY['open', 'waiting'], 'one open (the agent replied), one waiting');
SELECT is((jd_agent_inbox(:anna, 'closed') -> 'items' -> 0 ->> 'conversation'), :'conv3', 'the closed filter lists closed ones');
SELECT is((jd_agent_inbox(:bob) ->> 'total')::int, 1, 'an agent of site B sees only site B');
SELECT ok(NOT (jd_agent_inbox(:bob)::text LIKE '%' || :'conv' || '%'), 'and none of site A''s conversations');
SELECT jsonb_path_query_first(:'inbox'::jsonb, '$.items[*] ? (@.conversation == $c)', jsonb_build_object('c', :'conv')) AS item \gset
SELECT is(:'item'::jsonb -> 'last_message' ->> 'body', 'check the carrier', 'the item shows the last message (agents see notes)');
SELECT is((:'item'::jsonb ->> 'unread')::int, 2, 'two visitor messages are unread');
SELECT is(:'item'::jsonb -> 'assigned_agent', jsonb_build_object('id', :anna, 'name', 'Anna'), 'the replying agent is assigned');
SELECT is(:'item'::jsonb -> 'context', jsonb_build_object('page', 'https://a.example/cart',
          'stage', jsonb_build_object('id', :st_purchase, 'slug', 'purchase', 'name', 'Purchase'),
          'touchpoint', jsonb_build_object('id', :tp_website, 'slug', 'website', 'name', 'Website')),
          'the page context is where the visitor last wrote from');
SELECT is(jd_agent_inbox(:anna, 'waiting') -> 'items' -> 0 -> 'context' ->> 'page', 'https://a.example/two',
          'without a page on a message, the page the chat was opened on');
SELECT is(jsonb_array_length(:'item'::jsonb -> 'journey'), 20, 'the journey path holds the last 20 touch events');
SELECT is((SELECT array_agg(j ->> 'url') FROM jsonb_array_elements(:'item'::jsonb -> 'journey') WITH ORDINALITY x (j, n) WHERE n IN (1, 20)),
          ARRAY['https://a.example/p6', 'https://a.example/p25'], 'oldest first');
SELECT is(:'item'::jsonb -> 'journey' -> 19 ->> 'stage', 'purchase', 'each step with its stage');
SELECT is(:'item'::jsonb -> 'visitor' ->> 'email', 'v@example.com', 'the visitor''s e-mail');
UPDATE conversations SET last_message_at = last_message_at + interval '1 minute' WHERE id = :'conv2';
SELECT is((jd_agent_inbox(:anna, NULL, 1, 0) -> 'items' -> 0 ->> 'conversation'), :'conv2',
          'the most recent activity comes first');
SELECT is((jd_agent_inbox(:anna, NULL, 1, 1) -> 'items' -> 0 ->> 'conversation'), :'conv',
          'limit and offset page through the list (most recent activity first)');
SELECT throws_ok(format($$SELECT jd_agent_inbox(%s, 'archived')$$, :anna), 'JD400', NULL, 'an unknown status is refused');
SELECT jd_agent_disable(:bob) \g /dev/null
SELECT throws_ok(format($$SELECT jd_agent_inbox(%s)$$, :bob), 'JD403', NULL, 'a disabled agent has no inbox');

-- Conversation detail: site check.
SELECT is(jd_agent_conversation(:anna, :'conv') ->> 'conversation', :'conv', 'an agent opens a conversation of its site');
SELECT ok(jd_agent_conversation(:anna, :'conv') ? 'state', 'with its live state');
SELECT jd_agent_create(:site_b, 'bea@shop-b.example', 'Bea', 'agent', 'yet another secret') AS bea \gset
SELECT throws_ok(format($$SELECT jd_agent_conversation(%s, %L)$$, :bea, :'conv'), 'JD404', NULL,
                 'an agent of another site gets 404');
SELECT throws_ok(format($$SELECT jd_agent_conversation(%s, %L)$$, :bea, gen_random_uuid()), 'JD404', NULL,
                 'exactly like an unknown conversation');
SELECT throws_ok(format($$SELECT jd_chat_mark(%L, 1, 'read', 'agent', %s)$$, :'conv', :bea), 'JD404', NULL,
                 'nor can it send receipts');
SELECT throws_ok(format($$SELECT jd_chat_typing(%L, 'agent', true, %s)$$, :'conv', :bea), 'JD404', NULL,
                 'nor type');
SELECT throws_ok(format($$SELECT jd_chat_close(%L, %s)$$, :'conv', :bea), 'JD404', NULL, 'nor close');

-- Receipts.
SELECT jd_chat_mark(:'conv', 2, 'delivered', 'visitor') AS mk \gset
SELECT is(:'mk'::jsonb - 'conversation', '{"by": "visitor", "delivered_seq": 2, "read_seq": 0, "changed": true}'::jsonb,
          'the visitor confirms delivery up to seq 2');
SELECT is(array_agg(seq ORDER BY seq), ARRAY[2::bigint], 'only the agent''s message gets delivered_at')
FROM messages WHERE conversation_id = :'conv' AND delivered_at IS NOT NULL;
SELECT jd_chat_mark(:'conv', 99, 'read', 'visitor') AS mk \gset
SELECT is(:'mk'::jsonb - 'conversation', '{"by": "visitor", "delivered_seq": 4, "read_seq": 4, "changed": true}'::jsonb,
          'read implies delivered, clamped to last_seq');
SELECT is(read_at IS NULL, true, 'a note is never marked by the visitor') FROM messages WHERE conversation_id = :'conv' AND kind = 'note';
SELECT is(jd_chat_mark(:'conv', 1, 'read', 'visitor') ->> 'changed', 'false', 'a watermark never goes back');
SELECT jd_chat_mark(:'conv', 3, 'read', 'agent', :anna) \g /dev/null
SELECT is(array_agg(seq ORDER BY seq), ARRAY[1, 3]::bigint[], 'agents mark the visitor''s messages')
FROM messages WHERE conversation_id = :'conv' AND read_at IS NOT NULL AND sender = 'visitor';
SELECT is(jd_chat_state(:'conv') -> 'receipts', '{"visitor_delivered_seq": 4, "visitor_read_seq": 4, "agent_delivered_seq": 3, "agent_read_seq": 3}'::jsonb,
          'the state carries the four watermarks');
SELECT is((jsonb_path_query_first(jd_agent_inbox(:anna), '$.items[*] ? (@.conversation == $c)',
                                   jsonb_build_object('c', :'conv')) ->> 'unread')::int, 0, 'read messages are no longer unread');
SELECT throws_ok(format($$SELECT jd_chat_mark(%L, 1, 'seen', 'visitor')$$, :'conv'), 'JD400', NULL, 'what is delivered or read');
SELECT throws_ok(format($$SELECT jd_chat_mark(%L, 1, 'read', 'agent')$$, :'conv'), 'JD400', NULL, 'an agent receipt names the agent');

-- Typing.
SELECT ok(jd_chat_typing(:'conv', 'visitor', true), 'the visitor starts typing');
SELECT is(jd_chat_state(:'conv') -> 'visitor_typing', 'true'::jsonb, 'the state shows it');
SELECT ok(jd_chat_typing(:'conv', 'agent', true, :anna), 'the agent starts typing');
SELECT is(jd_chat_state(:'conv') -> 'agent_typing', jsonb_build_object('id', :anna, 'name', 'Anna'), 'the state names the agent');
UPDATE conversations SET visitor_typing_until = now() - interval '1 second' WHERE id = :'conv';
SELECT is(jd_chat_state(:'conv') -> 'visitor_typing', 'false'::jsonb, 'typing expires by itself');
SELECT ok(jd_chat_typing(:'conv', 'agent', false, :anna), 'stopping notifies');
SELECT is(jd_chat_state(:'conv') -> 'agent_typing', 'null'::jsonb, 'and clears the indicator');

-- Closing.
SELECT jd_chat_close(:'conv', :anna) AS cl \gset
SELECT is(:'cl'::jsonb - 'conversation', '{"status": "closed", "seq": 5, "changed": true}'::jsonb, 'closing logs a system message');
SELECT is(row(sender, body)::text, row('system', 'Anna closed the conversation.')::text, 'which says who closed it')
FROM messages WHERE conversation_id = :'conv' AND seq = 5;
SELECT is(row(status, closed_by, closed_at IS NOT NULL)::text, row('closed', :anna, true)::text, 'the conversation is closed')
FROM conversations WHERE id = :'conv';
SELECT is(jd_chat_close(:'conv', :anna) - 'conversation', '{"status": "closed", "seq": null, "changed": false}'::jsonb,
          'closing twice changes nothing');
SELECT is(last_seq, 5::bigint, 'and logs nothing') FROM conversations WHERE id = :'conv';
SELECT is((jd_chat_close(:'conv2', NULL) ->> 'seq')::int, 2, 'a visitor can end the chat too');
SELECT is(body, 'The visitor ended the conversation.', 'with its own system message') FROM messages WHERE conversation_id = :'conv2' AND seq = 2;

SELECT * FROM finish();
ROLLBACK;
