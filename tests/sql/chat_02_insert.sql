-- pgTAP: jd_chat_insert: gapless ordered seq per conversation, idempotent resends, status (sql/020_chat.sql).
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

-- Fixture: site A with one map, site B with its own (chat_fixture.psql).
\ir chat_fixture.psql
SELECT jd_agent_create(:site_a, 'anna@shop-a.example', 'Anna', 'agent', 'correct horse battery') AS anna \gset
CREATE TEMP TABLE conv (k int PRIMARY KEY, id uuid);
INSERT INTO conv SELECT k, o.conversation_id FROM generate_series(0, 2) k,
    LATERAL jd_chat_open(:site_a, gen_random_uuid(), NULL, NULL, 'https://a.example/' || k, NULL, NULL) o;
CREATE FUNCTION pg_temp.cid(i int) RETURNS uuid LANGUAGE sql AS $$
    SELECT format('00000000-0000-4000-8000-%s', lpad(i::text, 12, '0'))::uuid $$;
CREATE FUNCTION pg_temp.msg(i int, k int, site bigint, body text DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('conversation_id', (SELECT c.id FROM conv c WHERE c.k = $2),
        'site_id', $3, 'client_id', pg_temp.cid($1), 'sender', 'visitor', 'kind', 'text',
        'body', coalesce($4, 'message ' || $1), 'page_url', 'https://a.example/p' || $1) $$;

-- 30 messages interleaved over three conversations, then three of them again inside the same
-- array with another body.
CREATE TEMP TABLE batch1 AS
SELECT jsonb_agg(m ORDER BY o) AS j FROM (
    SELECT pg_temp.msg(i, i % 3, :site_a) AS m, i AS o FROM generate_series(1, 30) i
    UNION ALL
    SELECT pg_temp.msg(i, i % 3, :site_a, 'duplicate ' || i), 100 + i FROM unnest(ARRAY[2, 5, 7]) i) x;
SELECT is(jsonb_array_length(j), 33, 'the batch holds 33 records') FROM batch1;
CREATE TEMP TABLE r1 AS SELECT jd_chat_insert(j) AS r FROM batch1;

SELECT is((SELECT count(*) FROM jsonb_object_keys(r)), 30::bigint, 'the result maps all 30 client ids') FROM r1;
SELECT is((SELECT count(*) FROM messages JOIN conv ON conv.id = conversation_id), 30::bigint, 'in-array duplicates make no row');
SELECT is((SELECT array_agg(last_seq ORDER BY k) FROM conversations JOIN conv USING (id)), ARRAY[10, 10, 10]::bigint[],
          'each conversation''s last_seq is its number of messages');
SELECT is((SELECT array_agg(m.seq ORDER BY m.seq) FROM messages m WHERE m.conversation_id = c.id),
          (SELECT array_agg(g::bigint) FROM generate_series(1, 10) g),
          format('conversation %s: seq is 1..10 without gaps', c.k))
FROM conv c;
SELECT is((SELECT array_agg(m.client_id ORDER BY m.seq) FROM messages m WHERE m.conversation_id = c.id),
          (SELECT array_agg(pg_temp.cid(i) ORDER BY i) FROM generate_series(1, 30) i WHERE i % 3 = c.k),
          format('conversation %s: seq follows the order of the array', c.k))
FROM conv c;
SELECT is((r ->> pg_temp.cid(i)::text)::bigint, (SELECT seq FROM messages WHERE client_id = pg_temp.cid(i)),
          format('message %s: the result gives its seq', i))
FROM r1, generate_series(1, 30) i WHERE i IN (1, 2, 15, 30);
SELECT is((SELECT body FROM messages WHERE client_id = pg_temp.cid(i)), 'message ' || i,
          format('duplicate %s inside the array: the first occurrence is stored', i))
FROM unnest(ARRAY[2, 5, 7]) i;

-- A resend of the whole batch: the same answer, no new row, no seq consumed.
SELECT is(jd_chat_insert(j), (SELECT r FROM r1), 'a resend returns the same seqs') FROM batch1;
SELECT is((SELECT count(*) FROM messages JOIN conv ON conv.id = conversation_id), 30::bigint, 'a resend makes no row');
SELECT is((SELECT sum(last_seq) FROM conversations JOIN conv USING (id)), 30::numeric, 'a resend consumes no seq');

-- A batch mixing old and new messages: old ones keep their seq, new ones continue without a gap.
CREATE TEMP TABLE r2 AS SELECT jd_chat_insert(jsonb_agg(m ORDER BY o)) AS r FROM (
    SELECT pg_temp.msg(i, i % 3, :site_a) AS m, i AS o FROM generate_series(25, 36) i) x;
SELECT is((SELECT count(*) FROM jsonb_object_keys(r)), 12::bigint, 'mixed batch: 12 acks') FROM r2;
SELECT is((r ->> pg_temp.cid(27)::text)::bigint, (SELECT (r ->> pg_temp.cid(27)::text)::bigint FROM r1),
          'mixed batch: an old message keeps its seq') FROM r2;
SELECT is(array_agg((r ->> pg_temp.cid(i)::text)::bigint ORDER BY i), ARRAY[11, 11, 11, 12, 12, 12]::bigint[],
          'mixed batch: the new messages get 11 and 12 in each conversation')
FROM r2, generate_series(31, 36) i;
SELECT ok(bool_and(c.last_seq = n.cnt AND n.mx = n.cnt), 'no conversation has a gap after the mixed batch')
FROM conversations c JOIN conv USING (id)
JOIN (SELECT conversation_id, count(*) AS cnt, max(seq) AS mx FROM messages GROUP BY 1) n
  ON n.conversation_id = c.id;

-- A bigger batch: 600 records over 40 conversations in shuffled order, 100 of them repeats.
INSERT INTO conv SELECT k, o.conversation_id FROM generate_series(10, 49) k,
    LATERAL jd_chat_open(:site_a, gen_random_uuid(), NULL, NULL, 'https://a.example/' || k, NULL, NULL) o;
SELECT is(count(DISTINCT id), 43::bigint, '43 distinct conversations') FROM conv;
SELECT setseed(0.42) \g /dev/null
CREATE TEMP TABLE big AS
SELECT i, 10 + (i * 7919) % 40 AS k, random() AS o FROM generate_series(1000, 1499) i
UNION ALL SELECT i, 10 + (i * 7919) % 40, random() FROM generate_series(1000, 1099) i;
CREATE TEMP TABLE rbig AS SELECT jd_chat_insert(jsonb_agg(pg_temp.msg(i, k, :site_a) ORDER BY o)) AS r FROM big;
SELECT is((SELECT count(*) FROM jsonb_object_keys(r)), 500::bigint, 'big batch: 500 distinct acks') FROM rbig;
SELECT is((SELECT count(*) FROM messages m JOIN conv c ON c.id = m.conversation_id WHERE c.k >= 10), 500::bigint,
          'big batch: 500 rows');
SELECT ok(bool_and(x.seqs = ARRAY(SELECT generate_series(1::bigint, x.n))),
          'big batch: every conversation holds 1..n without gaps')
FROM (SELECT array_agg(m.seq ORDER BY m.seq) AS seqs, count(*) AS n
      FROM conv c JOIN messages m ON m.conversation_id = c.id
      WHERE c.k >= 10 GROUP BY c.id) x;
SELECT ok(bool_and(c.last_seq = (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)),
          'big batch: last_seq equals the row count everywhere')
FROM conversations c JOIN conv USING (id) WHERE conv.k >= 10;
SELECT ok(NOT EXISTS (
    SELECT 1 FROM (SELECT m.conversation_id, m.seq, b.o,
                          lag(b.o) OVER (PARTITION BY m.conversation_id ORDER BY m.seq) AS prev_o
                   FROM messages m
                   JOIN (SELECT DISTINCT ON (i) i, o FROM big ORDER BY i, o) b ON pg_temp.cid(b.i) = m.client_id) z
    WHERE z.prev_o > z.o), 'big batch: seq follows each message''s first position in the array');

-- Status and assignment.
SELECT is(status, 'waiting', 'visitor messages leave a new conversation waiting') FROM conversations WHERE id = (SELECT id FROM conv WHERE k = 0);
SELECT jd_chat_insert(jsonb_build_array(jsonb_build_object('conversation_id', (SELECT id FROM conv WHERE k = 0),
    'site_id', :site_a, 'client_id', gen_random_uuid(), 'sender', 'agent', 'agent_id', :anna, 'kind', 'note',
    'body', 'VIP customer'))) \g /dev/null
SELECT is(status, 'waiting', 'a private note does not change the status') FROM conversations WHERE id = (SELECT id FROM conv WHERE k = 0);
SELECT is(assigned_agent_id, NULL, 'a private note assigns nobody') FROM conversations WHERE id = (SELECT id FROM conv WHERE k = 0);
SELECT jd_chat_insert(jsonb_build_array(jsonb_build_object('conversation_id', (SELECT id FROM conv WHERE k = 0),
    'site_id', :site_a, 'client_id', gen_random_uuid(), 'sender', 'agent', 'agent_id', :anna, 'body', 'Hello!'))) \g /dev/null
SELECT is(status, 'open', 'an agent reply opens the conversation') FROM conversations WHERE id = (SELECT id FROM conv WHERE k = 0);
SELECT is(assigned_agent_id, :anna::bigint, 'and assigns the agent') FROM conversations WHERE id = (SELECT id FROM conv WHERE k = 0);
SELECT jd_chat_close((SELECT id FROM conv WHERE k = 0), :anna) \g /dev/null
SELECT jd_chat_insert(jsonb_build_array(pg_temp.msg(77, 0, :site_a))) \g /dev/null
SELECT is(status, 'waiting', 'a visitor message reopens a closed conversation as waiting')
FROM conversations WHERE id = (SELECT id FROM conv WHERE k = 0);
SELECT is(closed_at, NULL, 'and clears closed_at') FROM conversations WHERE id = (SELECT id FROM conv WHERE k = 0);
SELECT is((SELECT array_agg(seq ORDER BY seq) = array_agg(n ORDER BY n)
           FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS n FROM messages
                 WHERE conversation_id = (SELECT id FROM conv WHERE k = 0)) z), true,
          'notes, replies and the close message share the gapless sequence');

-- Errors are class 22/23 (the ingest store isolates the record) and leave nothing behind.
SELECT throws_ok($$SELECT jd_chat_insert('{"a":1}')$$, '22023', NULL, 'the argument must be an array');
SELECT throws_ok(format($$SELECT jd_chat_insert('[{"conversation_id":"%s","site_id":%s,"client_id":"%s","body":"x"}]')$$,
                        gen_random_uuid(), :site_a, gen_random_uuid()),
                 '23503', NULL, 'an unknown conversation is refused');
SELECT throws_ok(format($$SELECT jd_chat_insert(jsonb_build_array(pg_temp.msg(900, 1, %s)))$$, :site_b),
                 '23503', NULL, 'a record naming another site than the conversation''s is refused');
SELECT throws_ok(format($$SELECT jd_chat_insert('[{"conversation_id":"%s","site_id":%s,"client_id":"%s","sender":"agent","body":"x"}]')$$,
                        (SELECT id FROM conv WHERE k = 1), :site_a, gen_random_uuid()),
                 '23514', NULL, 'an agent message needs agent_id');
SELECT throws_ok(format($$SELECT jd_chat_insert('[{"conversation_id":"%s","site_id":%s,"body":"x"}]')$$,
                        (SELECT id FROM conv WHERE k = 1), :site_a),
                 '23502', NULL, 'a record needs a client_id');
SELECT throws_ok($$SELECT jd_chat_insert('[{"conversation_id":"not-a-uuid","client_id":"x"}]')$$,
                 '22P02', NULL, 'a malformed uuid is a data error');
SELECT throws_ok($$SELECT jd_chat_insert(jsonb_build_array(pg_temp.msg(901, 1, $$ || :site_a || $$),
                                                       pg_temp.msg(902, 1, $$ || :site_a || $$, repeat('x', 4001))))$$,
                 '23514', NULL, 'a body over 4000 characters is refused');
SELECT is((SELECT count(*) FROM messages WHERE client_id = pg_temp.cid(901)), 0::bigint,
          'a refused batch stores none of its records');
SELECT is(last_seq, 12::bigint, 'a refused batch consumes no seq') FROM conversations WHERE id = (SELECT id FROM conv WHERE k = 1);
SELECT is(jd_chat_insert('[]'), '{}'::jsonb, 'an empty batch is a no-op');

SELECT * FROM finish();
ROLLBACK;
