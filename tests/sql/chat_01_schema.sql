-- pgTAP: chat tables, keys and the constraints that guard them (sql/020_chat.sql).
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

-- Fixture: site A with one map, site B with its own (chat_fixture.psql).
\ir chat_fixture.psql
SELECT has_table(t) FROM unnest(ARRAY['agents', 'agent_sessions', 'agent_login_failures',
    'agent_presence', 'canned_responses', 'conversations', 'messages', 'message_codes']) AS t;
SELECT has_view('chat_evidence');
SELECT has_extension('pgcrypto');
SELECT has_function(f) FROM unnest(ARRAY['jd_chat_insert', 'jd_chat_open', 'jd_chat_resume',
    'jd_chat_fetch', 'jd_chat_poll', 'jd_chat_state', 'jd_chat_mark', 'jd_chat_typing',
    'jd_chat_close', 'jd_chat_rate', 'jd_chat_set_email', 'jd_agent_create', 'jd_agent_login',
    'jd_agent_session', 'jd_agent_logout', 'jd_agent_inbox', 'jd_agent_conversation',
    'jd_agent_presence', 'jd_agents_online', 'jd_code_message', 'jd_code_revise', 'jd_code_retract',
    'jd_chat_codes', 'jd_transcript', 'jd_chat_redact', 'jd_erase_chat', 'jd_chat_access',
    'jd_chat_purge_expired', 'jd_canned_list', 'jd_canned_save']) AS f;

SELECT col_type_is('conversations', 'id', 'uuid');
SELECT col_type_is('conversations', 'last_seq', 'bigint');
SELECT col_type_is('conversations', 'token_hash', 'bytea');
SELECT hasnt_column('conversations', 'token', 'the visitor token itself is never stored');
SELECT hasnt_column('agent_sessions', 'token', 'the session token itself is never stored');
SELECT col_type_is('messages', 'seq', 'bigint');
SELECT col_type_is('messages', 'client_id', 'uuid');
SELECT col_type_is('message_codes', 'obstacle_ids', 'bigint[]');
SELECT col_is_unique('messages', ARRAY['conversation_id', 'seq']);
SELECT col_is_unique('messages', ARRAY['conversation_id', 'client_id']);
SELECT col_is_pk('agent_presence', ARRAY['agent_id', 'instance']);
SELECT col_default_is('conversations', 'status', 'waiting');
SELECT col_default_is('messages', 'kind', 'text');

SELECT jd_agent_create(:site_a, 'anna@shop-a.example', 'Anna', 'admin', 'correct horse battery') AS anna \gset
SELECT jd_agent_create(:site_b, 'bob@shop-b.example', 'Bob', 'agent', 'another long secret') AS bob \gset
SELECT conversation_id AS conv FROM jd_chat_open(:site_a, '00000000-0000-4000-8000-0000000000a1', NULL,
    NULL, 'https://a.example/', NULL, NULL) \gset

-- Constraints reject what the functions would never write.
SELECT throws_ok(format($$INSERT INTO messages (conversation_id, site_id, seq, client_id, body)
                          VALUES (%L, %s, 1, gen_random_uuid(), repeat('x', 4001))$$, :'conv', :site_a),
                 '23514', NULL, 'a body over 4000 characters is refused');
SELECT throws_ok(format($$INSERT INTO messages (conversation_id, site_id, seq, client_id, body)
                          VALUES (%L, %s, 1, gen_random_uuid(), E' \n\t')$$, :'conv', :site_a),
                 '23514', NULL, 'a blank body is refused');
SELECT throws_ok(format($$INSERT INTO messages (conversation_id, site_id, seq, client_id, sender, kind, body)
                          VALUES (%L, %s, 1, gen_random_uuid(), 'visitor', 'note', 'hi')$$, :'conv', :site_a),
                 '23514', NULL, 'only agents write notes');
SELECT throws_ok(format($$INSERT INTO messages (conversation_id, site_id, seq, client_id, sender, kind, body)
                          VALUES (%L, %s, 1, gen_random_uuid(), 'agent', 'offline', 'hi')$$, :'conv', :site_a),
                 '23514', NULL, 'only visitors leave offline messages');
SELECT throws_ok(format($$INSERT INTO messages (conversation_id, site_id, seq, client_id, body)
                          VALUES (%L, %s, 1, gen_random_uuid(), 'hi')$$, :'conv', :site_b),
                 '23503', NULL, 'a message cannot name another site than its conversation''s');
SELECT throws_ok(format($$INSERT INTO messages (conversation_id, site_id, seq, client_id, sender, agent_id, body)
                          VALUES (%L, %s, 1, gen_random_uuid(), 'agent', %s, 'hi')$$, :'conv', :site_a, :bob),
                 '23503', NULL, 'an agent of site B cannot write into a site A conversation');
SELECT throws_ok(format($$INSERT INTO messages (conversation_id, site_id, seq, client_id, body)
                          VALUES (%L, %s, 0, gen_random_uuid(), 'hi')$$, :'conv', :site_a),
                 '23514', NULL, 'seq starts at 1');
SELECT throws_ok(format($$UPDATE conversations SET visitor_read_seq = 5 WHERE id = %L$$, :'conv'),
                 '23514', NULL, 'a receipt watermark cannot pass last_seq');
SELECT throws_ok(format($$UPDATE conversations SET status = 'closed' WHERE id = %L$$, :'conv'),
                 '23514', NULL, 'closed and closed_at go together');
SELECT throws_ok(format($$UPDATE agents SET password_hash = 'plain text' WHERE id = %s$$, :anna),
                 '23514', NULL, 'password_hash must be a bcrypt hash');
SELECT throws_ok($$INSERT INTO message_codes (message_id, map_id, span_start, span_end) VALUES (1, 1, 5, 5)$$,
                 '23514', NULL, 'an empty span is refused');
SELECT throws_ok($$INSERT INTO message_codes (message_id, map_id, span_start) VALUES (1, 1, 5)$$,
                 '23514', NULL, 'a span needs both ends');

SELECT * FROM finish();
ROLLBACK;
