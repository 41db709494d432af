-- pgTAP: LISTEN/NOTIFY and concurrent writers (sql/020_chat.sql). Notifications are only delivered
-- after COMMIT to other sessions, so this file drives two extra sessions through dblink: 'w'
-- writes (each dblink() call commits on its own), 'l' listens, 'b' is a second concurrent writer.
-- Its rows are committed under a site with a random key and deleted at the end.
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;
CREATE EXTENSION IF NOT EXISTS dblink;

SELECT format('dbname=%s user=%s host=%s port=%s', current_database(), current_user,
              coalesce(host(inet_server_addr()), split_part(current_setting('unix_socket_directories'), ',', 1)),
              current_setting('port')) AS connstr \gset
SELECT dblink_connect('w', :'connstr') \g /dev/null
SELECT dblink_connect('l', :'connstr') \g /dev/null
SELECT dblink_connect('b', :'connstr') \g /dev/null
SELECT dblink_exec('l', 'LISTEN journeyd_chat') \g /dev/null
SELECT dblink_exec('l', 'LISTEN journeyd_presence') \g /dev/null
SELECT dblink_exec('l', 'LISTEN journeyd_agent') \g /dev/null

-- Collects what 'l' received: waits until at least p_expect notifications arrived (3 s at most),
-- then 200 ms more so that an unexpected extra one is caught too.
CREATE TEMP TABLE got (channel text, payload text);
CREATE FUNCTION pg_temp.collect(p_expect int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n int := 0;
BEGIN
    DELETE FROM got;
    FOR i IN 1..60 LOOP
        EXIT WHEN n >= p_expect AND (p_expect > 0 OR i > 1);
        PERFORM pg_sleep(0.05);
        INSERT INTO got SELECT notify_name, extra FROM dblink_get_notify('l');
        SELECT count(*) INTO n FROM got;
    END LOOP;
    PERFORM pg_sleep(0.2);
    INSERT INTO got SELECT notify_name, extra FROM dblink_get_notify('l');
    RETURN (SELECT count(*) FROM got);
END $$;

-- Runs a query on 'w' (committing it) and returns its rows as text.
CREATE FUNCTION pg_temp.w(q text) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(r, ',') FROM dblink('w', 'SELECT x::text FROM (' || q || ') s (x)') AS t (r text) $$;

SELECT 'chat-notify-' || substr(md5(random()::text), 1, 12) AS key \gset
SELECT site FROM dblink('w', format($$INSERT INTO sites (key, name) VALUES (%L, 'Notify') RETURNING id$$, :'key'))
    AS t (site bigint) \gset
SELECT agent FROM dblink('w', format($$SELECT jd_agent_create(%s, 'nina@notify.example', 'Nina', 'agent',
    'a long enough secret')$$, :site)) AS t (agent bigint) \gset

CREATE TEMP TABLE nc AS
SELECT row_number() OVER (ORDER BY id) AS k, id FROM dblink('w', format(
    $$SELECT o.conversation_id FROM generate_series(1, 3) k,
      LATERAL jd_chat_open(%s, gen_random_uuid(), NULL, NULL, 'https://n.example/' || k, NULL, NULL) o$$, :site))
    AS t (id uuid);
SELECT is(pg_temp.collect(3), 3::bigint, 'opening three conversations notifies three times');
SELECT set_eq('SELECT payload::uuid FROM got', 'SELECT id FROM nc', 'one notification per new conversation, payload = its id');

CREATE FUNCTION pg_temp.msg(i int, k bigint) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('conversation_id', (SELECT id FROM nc WHERE nc.k = $2), 'site_id',
        (SELECT site_id FROM conversations WHERE id = (SELECT id FROM nc WHERE nc.k = $2)),
        'client_id', format('00000000-0000-4000-9000-%s', lpad($1::text, 12, '0')), 'body', 'm' || $1) $$;
-- (The conversations are committed by 'w', so this session sees them.)
SELECT jsonb_agg(pg_temp.msg(i, 1 + i % 3) ORDER BY i) || jsonb_agg(pg_temp.msg(i, 1 + i % 3) ORDER BY i)
    FILTER (WHERE i <= 3) AS batch
FROM generate_series(1, 12) i \gset

SELECT r FROM dblink('w', format('SELECT jd_chat_insert(%L)', :'batch')) AS t (r jsonb) \gset first_
SELECT is(pg_temp.collect(3), 3::bigint, 'a batch touching three conversations notifies three times');
SELECT bag_eq('SELECT payload::uuid FROM got', 'SELECT id FROM nc',
              'each touched conversation exactly once, whatever its number of messages and duplicates');
SELECT ok(bool_and(channel = 'journeyd_chat'), 'on the journeyd_chat channel') FROM got;

SELECT r FROM dblink('w', format('SELECT jd_chat_insert(%L)', :'batch')) AS t (r jsonb) \gset again_
SELECT is(:'again_r'::jsonb, :'first_r'::jsonb, 'a resend from another session returns the same seqs');
SELECT is(pg_temp.collect(0), 0::bigint, 'a resend that stores nothing notifies nobody');

SELECT jsonb_build_array(pg_temp.msg(1, 2), pg_temp.msg(50, 1)) AS mixed \gset
SELECT pg_temp.w(format('SELECT jd_chat_insert(%L)', :'mixed')) \g /dev/null
SELECT is(pg_temp.collect(1), 1::bigint, 'a batch with one new message and one old one notifies once');
SELECT is(payload::uuid, (SELECT id FROM nc WHERE k = 1), 'for the conversation that got the new message') FROM got;

-- Typing, receipts, close, presence.
SELECT id AS c1 FROM nc WHERE k = 1 \gset
SELECT pg_temp.w(format($$SELECT jd_chat_typing(%L, 'visitor', true)$$, :'c1')) \g /dev/null
SELECT is(pg_temp.collect(1), 1::bigint, 'typing on notifies');
SELECT pg_temp.w(format($$SELECT jd_chat_typing(%L, 'visitor', true)$$, :'c1')) \g /dev/null
SELECT is(pg_temp.collect(0), 0::bigint, 'typing on again within 3 s does not');
SELECT pg_temp.w(format($$SELECT jd_chat_typing(%L, 'visitor', false)$$, :'c1')) \g /dev/null
SELECT is(pg_temp.collect(1), 1::bigint, 'typing off notifies');
SELECT pg_temp.w(format($$SELECT jd_chat_mark(%L, 3, 'read', 'agent', %s)$$, :'c1', :agent)) \g /dev/null
SELECT is(pg_temp.collect(1), 1::bigint, 'a read receipt that moves the watermark notifies');
SELECT pg_temp.w(format($$SELECT jd_chat_mark(%L, 2, 'read', 'agent', %s)$$, :'c1', :agent)) \g /dev/null
SELECT is(pg_temp.collect(0), 0::bigint, 'a receipt behind the watermark does not');
SELECT pg_temp.w(format($$SELECT jd_chat_close(%L, %s)$$, :'c1', :agent)) \g /dev/null
SELECT is(pg_temp.collect(1), 1::bigint, 'closing notifies once (message and status in one transaction)');
SELECT pg_temp.w(format($$SELECT jd_agent_presence(%s, 'instance-a', true)$$, :agent)) \g /dev/null
SELECT is(pg_temp.collect(1), 1::bigint, 'an agent coming online notifies');
SELECT is(channel || ':' || payload, 'journeyd_presence:' || :site, 'on journeyd_presence with the site id') FROM got;
SELECT pg_temp.w(format($$SELECT jd_agent_presence(%s, 'instance-b', true)$$, :agent)) \g /dev/null
SELECT is(pg_temp.collect(0), 0::bigint, 'the same agent on a second instance does not');
SELECT pg_temp.w(format($$SELECT jd_agent_presence(%s, 'instance-a', false)$$, :agent)) \g /dev/null
SELECT is(pg_temp.collect(0), 0::bigint, 'leaving one of two instances does not');
SELECT pg_temp.w(format($$SELECT jd_presence_clear_instance('instance-b')$$)) \g /dev/null
SELECT is(pg_temp.collect(1), 1::bigint, 'going offline everywhere notifies');
SELECT token AS tok FROM dblink('w', format($$SELECT token FROM jd_agent_login(%L, 'nina@notify.example', 'a long enough secret')$$, :'key'))
    AS t (token text) \gset
SELECT pg_temp.w(format($$SELECT jd_agent_logout(%L)$$, :'tok')) \g /dev/null
SELECT is(pg_temp.collect(1), 1::bigint, 'a logout notifies');
SELECT is(channel || ':' || payload, 'journeyd_agent:' || :agent, 'on journeyd_agent with the agent id, so instances close its sockets') FROM got;
SELECT pg_temp.w(format($$SELECT jd_agent_logout(%L)$$, :'tok')) \g /dev/null
SELECT is(pg_temp.collect(0), 0::bigint, 'a second logout of the same token does not');

-- Two writers, one conversation: 'w' inserts X inside an open transaction; 'b' sends X again and
-- a new Y, and must wait for w's row lock. After w commits, b sees X (same seq, no second row)
-- and Y gets the next seq: no gap, no unique violation.
SELECT id AS c2 FROM nc WHERE k = 2 \gset
SELECT last_seq AS before FROM conversations WHERE id = :'c2' \gset
SELECT jsonb_build_array(pg_temp.msg(100, 2)) AS x, jsonb_build_array(pg_temp.msg(100, 2), pg_temp.msg(101, 2)) AS xy \gset
SELECT dblink_exec('w', 'BEGIN') \g /dev/null
SELECT r FROM dblink('w', format('SELECT jd_chat_insert(%L)', :'x')) AS t (r jsonb) \gset w_
SELECT dblink_send_query('b', format('SELECT jd_chat_insert(%L)', :'xy')) \g /dev/null
SELECT pg_sleep(0.3) \g /dev/null
SELECT is(dblink_is_busy('b'), 1, 'the second writer waits for the first one''s conversation lock');
SELECT dblink_exec('w', 'COMMIT') \g /dev/null
SELECT r FROM dblink_get_result('b') AS t (r jsonb) \gset b_
SELECT dblink_get_result('b') \g /dev/null
SELECT is((:'b_r'::jsonb ->> '00000000-0000-4000-9000-000000000100')::bigint,
          (:'w_r'::jsonb ->> '00000000-0000-4000-9000-000000000100')::bigint,
          'the waiting writer acks the first writer''s message with its seq');
SELECT is((:'b_r'::jsonb ->> '00000000-0000-4000-9000-000000000101')::bigint, :before + 2::bigint,
          'and its own new message gets the next seq');
SELECT is(count(*), 1::bigint, 'one row for the message both wrote')
FROM messages WHERE conversation_id = :'c2' AND client_id = '00000000-0000-4000-9000-000000000100';
SELECT is(array_agg(seq ORDER BY seq), ARRAY(SELECT generate_series(1::bigint, :before + 2::bigint)),
          'the conversation is still gapless') FROM messages WHERE conversation_id = :'c2';

-- Clean up what the other sessions committed.
SELECT dblink_exec('w', format('DELETE FROM sites WHERE id = %s', :site)) \g /dev/null
SELECT dblink_disconnect(c) FROM unnest(ARRAY['w', 'l', 'b']) c \g /dev/null
SELECT * FROM finish();
ROLLBACK;
