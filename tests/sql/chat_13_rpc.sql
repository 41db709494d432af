-- pgTAP: the daemon's entry points into chat (sql/021_chat_rpc.sql): jd_chat_rpc for WebSocket
-- frames and jd_agent_http for the console's routes. Checks what the daemon relies on: results
-- shaped as the frames it forwards, JDnnn errors with DETAIL = the error code, slugs resolved in
-- the site's maps, agents confined to their site, the HTTP statuses and the session cookie.
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

INSERT INTO sites (key, name) VALUES ('rpc-site-a-0001', 'Shop A') RETURNING id AS site_a \gset
INSERT INTO sites (key, name) VALUES ('rpc-site-b-0001', 'Shop B') RETURNING id AS site_b \gset
INSERT INTO maps (site_id, slug, name) VALUES (:site_a, 'main', 'Main') RETURNING id AS map_a \gset
INSERT INTO stages (map_id, slug, name, position) VALUES (:map_a, 'purchase', 'Purchase', 1);
INSERT INTO touchpoints (map_id, slug, name) VALUES (:map_a, 'website', 'Website');
SELECT jd_agent_create(:site_a, 'anna@a.example', 'Anna', 'admin', 'correct horse battery') AS anna \gset
SELECT jd_agent_create(:site_b, 'bob@b.example', 'Bob', 'admin', 'correct horse battery') AS bob \gset

-- The visitor context the daemon passes (from the hello).
SELECT format('{"site_id": %s, "respondent": "00000000-0000-4000-8000-0000000000a1", "session": "00000000-0000-4000-8000-0000000000b1"}', :site_a) AS vctx \gset

-- open
SELECT jd_chat_rpc('open', :'vctx', '{"id": "cccccccc-0000-4000-8000-000000000001", "email": "ana@example.com", "page": {"url": "https://a.example/cart"}, "stage": "purchase", "touchpoint": "website"}') AS opened \gset
SELECT ok((:'opened'::jsonb) ?& ARRAY['conversation', 'token', 'status', 'last_seq', 'presence'],
          'open returns what chat.opened carries');
SELECT is((:'opened'::jsonb) ->> 'status', 'waiting', 'a new conversation waits');
SELECT is((:'opened'::jsonb) -> 'presence', '{"online": false, "agents": 0}'::jsonb, 'presence: nobody online yet');
SELECT (:'opened'::jsonb) ->> 'conversation' AS conv, (:'opened'::jsonb) ->> 'token' AS token \gset
SELECT is((SELECT row(stage_id IS NOT NULL, touchpoint_id IS NOT NULL, page_url)::text FROM conversations WHERE id = :'conv'),
          row(true, true, 'https://a.example/cart')::text, 'slugs become the site''s stage and touchpoint ids');
SELECT throws_ok(format($$SELECT jd_chat_rpc('open', %L, '{"id": "cccccccc-0000-4000-8000-000000000002", "stage": "nope"}')$$, :'vctx'),
                 'JD400', 'unknown stage "nope"', 'an unknown stage slug is JD400 unknown_stage');

-- message: acked with its seq; a resend returns the same seq
SELECT jd_chat_rpc('message', :'vctx', format('{"id": "dddddddd-0000-4000-8000-000000000001", "conversation": "%s", "body": "Hi", "page": {"url": "https://a.example/x"}}', :'conv')::jsonb) AS m1 \gset
SELECT is(:'m1'::jsonb, '{"seq": 1}'::jsonb, 'a message returns its seq');
SELECT is(jd_chat_rpc('message', :'vctx', format('{"id": "dddddddd-0000-4000-8000-000000000001", "conversation": "%s", "body": "Hi"}', :'conv')::jsonb),
          '{"seq": 1}'::jsonb, 'a resend returns the first seq');
SELECT is((SELECT count(*)::int FROM messages WHERE conversation_id = :'conv'), 1, 'and makes no second row');

-- resume: the token, the site
SELECT is(jd_chat_rpc('resume', :'vctx', format('{"conversation": "%s", "token": "%s"}', :'conv', :'token')::jsonb) ->> 'last_seq',
          '1', 'resume with the token returns the state');
SELECT throws_ok(format($$SELECT jd_chat_rpc('resume', %L, '{"conversation": "%s", "token": "jdc_wrong"}')$$, :'vctx', :'conv'),
                 'JD403', 'unknown conversation or wrong token', 'a wrong token is JD403');
SELECT throws_ok(format($$SELECT jd_chat_rpc('resume', '{"site_id": %s}', '{"conversation": "%s", "token": "%s"}')$$, :site_b, :'conv', :'token'),
                 'JD403', 'unknown conversation or wrong token', 'the right token from another site is refused the same way');

-- agents: hello by session token, site confinement
SELECT token AS anna_token FROM jd_agent_login('rpc-site-a-0001', 'anna@a.example', 'correct horse battery') \gset
SELECT token AS bob_token FROM jd_agent_login('rpc-site-b-0001', 'bob@b.example', 'correct horse battery') \gset
SELECT is(jd_chat_rpc('agent_hello', format('{"token": "%s"}', :'anna_token')::jsonb, '{}') #>> '{agent,name}', 'Anna',
          'agent_hello returns the agent behind the session');
SELECT is(jd_chat_rpc('agent_hello', format('{"token": "%s"}', :'anna_token')::jsonb, '{}') -> 'catalog',
          '{"stages": [{"name": "Purchase", "slug": "purchase"}], "touchpoints": [{"name": "Website", "slug": "website"}], "obstacles": [], "personas": []}'::jsonb,
          'the welcome carries the site''s codebook for the coding form');
SELECT throws_ok($$SELECT jd_chat_rpc('agent_hello', '{"token": "jda_nope"}', '{}')$$, 'JD401', NULL,
                 'an unknown session is JD401');
SELECT is(jd_chat_rpc('agent_open', format('{"agent_id": %s}', :anna)::jsonb, format('{"conversation": "%s"}', :'conv')::jsonb) ->> 'conversation',
          :'conv', 'an agent of the site opens the conversation');
SELECT throws_ok(format($$SELECT jd_chat_rpc('agent_open', '{"agent_id": %s}', '{"conversation": "%s"}')$$, :bob, :'conv'),
                 'JD404', NULL, 'another site''s agent gets 404, as for a missing conversation');
SELECT throws_ok(format($$SELECT jd_chat_rpc('agent_message', '{"agent_id": %s}', '{"id": "eeeeeeee-0000-4000-8000-000000000001", "conversation": "%s", "body": "hi"}')$$, :bob, :'conv'),
                 'JD404', NULL, 'and cannot write into it');
SELECT is(jd_chat_rpc('agent_message', format('{"agent_id": %s}', :anna)::jsonb,
                      format('{"id": "eeeeeeee-0000-4000-8000-000000000002", "conversation": "%s", "body": "Hello!", "kind": "note"}', :'conv')::jsonb),
          '{"seq": 2}'::jsonb, 'an agent note gets the next seq');
SELECT is(jd_chat_rpc('poll', '{}', format('[{"conversation": "%s", "after_seq": 0, "for_agent": false}]', :'conv')::jsonb) #> '{results,0,messages}' -> 1,
          NULL, 'a visitor poll leaves the note out');
SELECT is(jd_chat_rpc('poll', '{}', format('[{"conversation": "%s", "after_seq": 0, "for_agent": true}]', :'conv')::jsonb) #>> '{results,0,state,unread}',
          '1', 'the state counts unread visitor messages');
SELECT throws_ok($$SELECT jd_chat_rpc('frobnicate', '{}', '{}')$$, 'JD400', NULL, 'an unknown operation is JD400');

-- HTTP routes
SELECT is((SELECT row(status, cookie IS NULL)::text FROM jd_agent_http('login', '{"site": "rpc-site-a-0001", "email": "anna@a.example", "password": "wrong one"}')),
          row(401, true)::text, 'a wrong password is 401 without a cookie');
SELECT is((SELECT row(status, cookie ~ '^jda_')::text FROM jd_agent_http('login', '{"site": "rpc-site-a-0001", "email": "ANNA@a.example", "password": "correct horse battery"}')),
          row(200, true)::text, 'the right one is 200 with the session token as cookie');
SELECT is((SELECT status FROM jd_agent_http('login', '{"site": 1, "email": "x", "password": "y"}')), 400, 'non-string fields are 400');
SELECT is((SELECT status FROM jd_agent_http('me', format('{"token": "%s"}', :'anna_token')::jsonb)), 200, 'me with a live session is 200');
SELECT is((SELECT status FROM jd_agent_http('transcript', format('{"token": "%s", "conversation": "%s", "format": "html"}', :'bob_token', :'conv')::jsonb)),
          404, 'another site''s transcript is 404');
SELECT is((SELECT status FROM jd_agent_http('transcript', format('{"token": "%s", "conversation": "not-a-uuid"}', :'anna_token')::jsonb)),
          404, 'a malformed conversation id is 404 too');
SELECT is((SELECT status FROM jd_agent_http('transcript', format('{"token": "%s", "conversation": "%s", "format": "pdf"}', :'anna_token', :'conv')::jsonb)),
          400, 'an unknown format is 400');
SELECT is((SELECT row(status, content_type)::text FROM jd_agent_http('transcript', format('{"token": "%s", "conversation": "%s", "format": "text"}', :'anna_token', :'conv')::jsonb)),
          row(200, 'text/plain; charset=utf-8')::text, 'the text transcript of one''s own site');
SELECT is((SELECT row(status, cookie)::text FROM jd_agent_http('logout', format('{"token": "%s"}', :'anna_token')::jsonb)),
          row(204, '')::text, 'logout is 204 and clears the cookie');
SELECT is((SELECT status FROM jd_agent_http('me', format('{"token": "%s"}', :'anna_token')::jsonb)), 401, 'after logout the session is gone');

SELECT * FROM finish();
ROLLBACK;
