-- pgTAP: agent accounts: bcrypt, login, lockout, sessions, logout, presence, canned responses (sql/020_chat.sql).
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

-- Fixture: site A with one map, site B with its own (chat_fixture.psql).
\ir chat_fixture.psql
-- Accounts and bcrypt.
SELECT jd_agent_create(:site_a, 'Anna@Shop-A.example', 'Anna', 'admin', 'correct horse battery') AS anna \gset
SELECT jd_agent_create(:site_a, 'ben@shop-a.example', 'Ben', 'agent', 'ben''s long password') AS ben \gset
SELECT jd_agent_create(:site_b, 'anna@shop-a.example', 'Other Anna', 'agent', 'a different secret') AS anna_b \gset
SELECT matches(password_hash, '^\$2[ab]\$10\$[./A-Za-z0-9]{53}$', 'passwords are stored as bcrypt (cost 10)')
FROM agents WHERE id = :anna;
SELECT is(crypt('correct horse battery', password_hash), password_hash, 'the hash verifies the password')
FROM agents WHERE id = :anna;
SELECT isnt(a.password_hash, b.password_hash, 'each hash has its own salt')
FROM agents a, agents b WHERE a.id = :anna AND b.id = :ben;
SELECT ok(NOT EXISTS (SELECT 1 FROM agents a WHERE a::text LIKE '%correct horse%'), 'the password is stored nowhere');
SELECT throws_ok(format($$SELECT jd_agent_create(%s, 'ANNA@shop-a.example', 'Dup', 'agent', 'whatever long')$$, :site_a),
                 'JD409', NULL, 'e-mail is unique per site, case-insensitively');
SELECT throws_ok(format($$SELECT jd_agent_create(%s, 'c@shop-a.example', 'C', 'agent', 'short')$$, :site_a),
                 'JD400', NULL, 'a short password is refused');
SELECT throws_ok(format($$SELECT jd_agent_create(%s, 'c@shop-a.example', 'C', 'agent', repeat('é', 40))$$, :site_a),
                 'JD400', NULL, 'a password over 72 bytes is refused (bcrypt would cut it)');
SELECT throws_ok(format($$SELECT jd_agent_create(%s, 'c@shop-a.example', 'C', 'owner', 'long enough pw')$$, :site_a),
                 'JD400', NULL, 'role is admin or agent');

-- Login.
CREATE TEMP TABLE l1 AS SELECT * FROM jd_agent_login('chat-site-a-0001', ' anna@SHOP-A.example ', 'correct horse battery');
SELECT token FROM l1 \gset
SELECT is(error, NULL, 'the right password signs in') FROM l1;
SELECT matches(token, '^jda_[A-Za-z0-9_-]{43}$', 'with a 256-bit base64url token') FROM l1;
SELECT is(agent, jsonb_build_object('id', :anna, 'site_id', :site_a, 'email', 'Anna@Shop-A.example',
          'name', 'Anna', 'role', 'admin'), 'and the agent') FROM l1;
SELECT ok(expires_at BETWEEN now() + interval '11 hours' AND now() + interval '13 hours',
          'the session lasts 12 hours by default') FROM l1;
SELECT is(count(*), 1::bigint, 'only the token''s hash is stored')
FROM agent_sessions WHERE token_hash = sha256(convert_to(:'token', 'UTF8'));
SELECT is(row(s.agent_id, s.site_id, s.site_key, s.name, s.role)::text, row(:anna, :site_a, 'chat-site-a-0001', 'Anna', 'admin')::text,
          'jd_agent_session finds the agent behind the token') FROM jd_agent_session(:'token') s;
SELECT is(count(*), 0::bigint, 'an unknown token finds nobody') FROM jd_agent_session('jda_unknown');
SELECT is(count(*), 0::bigint, 'a NULL token finds nobody') FROM jd_agent_session(NULL);

SELECT is(error, 'invalid_credentials', 'a wrong password fails') FROM jd_agent_login('chat-site-a-0001', 'anna@shop-a.example', 'wrong');
SELECT is(row(token, agent, expires_at)::text, row(NULL::text, NULL::jsonb, NULL::timestamptz)::text, 'and returns nothing else')
FROM jd_agent_login('chat-site-a-0001', 'anna@shop-a.example', 'wrong');
SELECT is(error, 'invalid_credentials', 'an unknown e-mail fails alike') FROM jd_agent_login('chat-site-a-0001', 'nobody@shop-a.example', 'correct horse battery');
SELECT is(error, 'invalid_credentials', 'an unknown site fails alike') FROM jd_agent_login('no-such-site', 'anna@shop-a.example', 'correct horse battery');
SELECT is(error, 'invalid_credentials', 'another site''s password fails alike') FROM jd_agent_login('chat-site-a-0001', 'anna@shop-a.example', 'a different secret');
SELECT is(error, 'invalid_credentials', 'a NULL password fails') FROM jd_agent_login('chat-site-a-0001', 'anna@shop-a.example', NULL);
SELECT is(count(*), 6::bigint, 'failures are recorded (they commit: no exception)') FROM agent_login_failures;

-- Lockout after 10 failures in 15 minutes, for real and invented addresses alike.
SELECT error FROM generate_series(1, 6) i, jd_agent_login('chat-site-a-0001', 'ben@shop-a.example', 'guess ' || i) \g /dev/null
SELECT is(error, NULL, 'six failures do not lock') FROM jd_agent_login('chat-site-a-0001', 'ben@shop-a.example', 'ben''s long password');
SELECT is(count(*), 0::bigint, 'a success clears the failures') FROM agent_login_failures WHERE email = 'ben@shop-a.example';
SELECT error FROM generate_series(1, 10) i, jd_agent_login('chat-site-a-0001', 'ben@shop-a.example', 'guess ' || i) \g /dev/null
SELECT is(error, 'too_many_attempts', 'after 10 failures even the right password is refused')
FROM jd_agent_login('chat-site-a-0001', 'ben@shop-a.example', 'ben''s long password');
SELECT is(count(*), 10::bigint, 'attempts while locked are not recorded (the lock does not slide)')
FROM agent_login_failures WHERE email = 'ben@shop-a.example';
SELECT is(error, NULL, 'another agent is not locked') FROM jd_agent_login('chat-site-a-0001', 'anna@shop-a.example', 'correct horse battery');
SELECT error FROM generate_series(1, 10) i, jd_agent_login('chat-site-a-0001', 'ghost@shop-a.example', 'guess ' || i) \g /dev/null
SELECT is(error, 'too_many_attempts', 'an invented address locks the same way')
FROM jd_agent_login('chat-site-a-0001', 'ghost@shop-a.example', 'x');
UPDATE agent_login_failures SET failed_at = now() - interval '16 minutes' WHERE email = 'ben@shop-a.example';
SELECT is(error, NULL, 'after 15 minutes the lock is gone') FROM jd_agent_login('chat-site-a-0001', 'ben@shop-a.example', 'ben''s long password');

-- Logout, expiry, disabling, password change.
SELECT ok(jd_agent_logout(:'token'), 'logout revokes a live session');
SELECT is(count(*), 0::bigint, 'a revoked token finds nobody') FROM jd_agent_session(:'token');
SELECT ok(NOT jd_agent_logout(:'token'), 'logging out twice is harmless');
SELECT token AS t2 FROM jd_agent_login('chat-site-a-0001', 'anna@shop-a.example', 'correct horse battery') \gset
UPDATE agent_sessions SET created_at = now() - interval '13 hours', expires_at = now() - interval '1 second'
WHERE token_hash = sha256(convert_to(:'t2', 'UTF8'));
SELECT is(count(*), 0::bigint, 'an expired token finds nobody') FROM jd_agent_session(:'t2');
SELECT token AS t3 FROM jd_agent_login('chat-site-a-0001', 'anna@shop-a.example', 'correct horse battery', interval '5 minutes') \gset
SELECT is(count(*), 1::bigint, 'a session with a custom lifetime works') FROM jd_agent_session(:'t3');
SELECT jd_agent_set_password(:anna, 'a brand new password') \g /dev/null
SELECT is(count(*), 0::bigint, 'a new password ends every session') FROM jd_agent_session(:'t3');
SELECT is(error, 'invalid_credentials', 'the old password no longer works') FROM jd_agent_login('chat-site-a-0001', 'anna@shop-a.example', 'correct horse battery');
SELECT token AS t4 FROM jd_agent_login('chat-site-a-0001', 'anna@shop-a.example', 'a brand new password') \gset
SELECT jd_agent_disable(:anna) \g /dev/null
SELECT is(count(*), 0::bigint, 'disabling ends every session') FROM jd_agent_session(:'t4');
SELECT is(error, 'invalid_credentials', 'a disabled agent cannot sign in') FROM jd_agent_login('chat-site-a-0001', 'anna@shop-a.example', 'a brand new password');

-- Presence.
SELECT jd_agent_presence(:ben, 'i1', true) \g /dev/null
SELECT is(jd_agents_online(:site_a), jsonb_build_array(jsonb_build_object('id', :ben, 'name', 'Ben')), 'a heartbeat puts the agent online');
SELECT is(jd_agents_online(:site_b), '[]'::jsonb, 'only on its own site');
UPDATE agent_presence SET last_seen = now() - interval '31 seconds';
SELECT is(jd_agents_online(:site_a), '[]'::jsonb, 'without heartbeats the agent drops out after 30 s');
SELECT ok(jd_agent_presence(:ben, 'i1', true), 'a heartbeat after that reports a change');
SELECT ok(NOT jd_agent_presence(:ben, 'i1', true), 'the next one does not');

-- Canned responses: admins edit, every agent of the site reads.
SELECT jd_agent_create(:site_a, 'boss@shop-a.example', 'Boss', 'admin', 'the boss password') AS boss \gset
SELECT lives_ok(format($$SELECT jd_canned_save(%s, 'greeting', 'Greeting', 'Hello! How can I help?')$$, :boss), 'an admin saves a canned response');
SELECT lives_ok(format($$SELECT jd_canned_save(%s, 'greeting', 'Greeting', 'Hi there!')$$, :boss), 'and replaces it');
SELECT throws_ok(format($$SELECT jd_canned_save(%s, 'bye', 'Bye', 'Bye!')$$, :ben), 'JD403', NULL, 'an agent cannot');
SELECT is(jd_canned_list(:ben), jsonb_build_array(jsonb_build_object('id', (SELECT id FROM canned_responses WHERE shortcut = 'greeting'),
          'shortcut', 'greeting', 'title', 'Greeting', 'body', 'Hi there!')), 'agents of the site list them');
SELECT is(jd_canned_list(:anna_b), '[]'::jsonb, 'agents of another site do not see them');

SELECT * FROM finish();
ROLLBACK;
