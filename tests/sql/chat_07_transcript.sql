-- pgTAP: transcripts: CSV (RFC 4180, formula guard), JSONL, text, HTML, redaction, filters (sql/020_chat.sql).
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

-- Fixture: site A with one map, site B with its own (chat_fixture.psql).
\ir chat_fixture.psql
SELECT jd_agent_create(:site_a, 'anna@shop-a.example', 'Anna', 'agent', 'correct horse battery') AS anna \gset
INSERT INTO respondents (site_id, id) VALUES (:site_a, '00000000-0000-4000-8000-0000000000a1');
INSERT INTO sessions (id, site_id, respondent_id, consent_mode, consent)
VALUES ('00000000-0000-4000-8000-0000000000b1', :site_a, '00000000-0000-4000-8000-0000000000a1', 'none-required', true);
SELECT conversation_id AS conv FROM jd_chat_open(:site_a, '00000000-0000-4000-8000-0000000000a1',
    '00000000-0000-4000-8000-0000000000b1', NULL, 'https://a.example/cart', NULL, NULL) \gset
SELECT conversation_id AS other FROM jd_chat_open(:site_a, gen_random_uuid(), NULL, NULL, 'https://a.example/', NULL, NULL) \gset
SELECT conversation_id AS conv_b FROM jd_chat_open(:site_b, gen_random_uuid(), NULL, NULL, 'https://b.example/', NULL, NULL) \gset
CREATE FUNCTION pg_temp.m(conv uuid, site bigint, body text, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('conversation_id', $1, 'site_id', $2, 'client_id', gen_random_uuid(), 'body', $3) || $4 $$;
SELECT jd_chat_insert(jsonb_build_array(
    pg_temp.m(:'conv', :site_a, E'=HYPERLINK("http://evil.example","click"), then\nsee "this"',
              jsonb_build_object('page_url', 'https://a.example/cart?mail=visitor@example.com', 'stage_id', :st_purchase)),
    pg_temp.m(:'conv', :site_a, 'Reach me at jane.doe@example.co.uk or +44 20 7946 0958; card 4111 1111 1111 1111. '
                                 || 'It cost £1,299.99 on 2026-11-29, 29/11/2026 at 10:30, order 12345.'),
    pg_temp.m(:'conv', :site_a, 'Checking', jsonb_build_object('sender', 'agent', 'agent_id', :anna)),
    pg_temp.m(:'conv', :site_a, 'internal: refund them', jsonb_build_object('sender', 'agent', 'agent_id', :anna, 'kind', 'note')),
    pg_temp.m(:'conv', :site_a, '<img src=x onerror=alert(1)>'),
    pg_temp.m(:'conv', :site_a, '+SUM(A1:A9)'),
    pg_temp.m(:'conv', :site_a, '-2+3'),
    pg_temp.m(:'conv', :site_a, '@cmd'),
    pg_temp.m(:'conv', :site_a, E'\tTabbed'),
    pg_temp.m(:'conv', :site_a, '＝1+1'),
    pg_temp.m(:'other', :site_a, 'Other conversation'),
    pg_temp.m(:'conv_b', :site_b, 'Site B secret'))) \g /dev/null
SELECT jd_code_message(:anna, (SELECT id FROM messages WHERE conversation_id = :'conv' AND seq = 1), 0, 10, 1,
                       ARRAY['shipping-cost'], 'purchase', NULL) \g /dev/null

-- CSV.
SELECT jd_transcript(jsonb_build_object('site_id', :site_a, 'conversation', :'conv'), 'csv') AS csv \gset
SELECT is(split_part(:'csv', E'\r\n', 1),
          'conversation_id,respondent_id,consent,seq,created_at,sender,agent,kind,body,page_url,stage,touchpoint,emotions,obstacles,code_stages,code_touchpoints,coded_spans',
          'CSV starts with a header');
SELECT ok(right(:'csv', 2) = E'\r\n', 'records end with CRLF');
SELECT is(regexp_count(:'csv', E'\r\n'), 10, 'header and 9 records (the note is left out)');
SELECT ok(strpos(:'csv', E'"''=HYPERLINK(""http://evil.example"",""click""), then\nsee ""this"""') > 0,
          'a formula gets an apostrophe; quotes are doubled; a newline stays inside the quoted field');
SELECT ok(strpos(:'csv', '"''+SUM(A1:A9)"') > 0, '+ is guarded');
SELECT ok(strpos(:'csv', '"''-2+3"') > 0, '- is guarded');
SELECT ok(strpos(:'csv', '"''@cmd"') > 0, '@ is guarded');
SELECT ok(strpos(:'csv', E'"''\tTabbed"') > 0, 'a leading tab is guarded');
SELECT ok(strpos(:'csv', '"''＝1+1"') > 0, 'a full-width = is guarded');
SELECT ok(strpos(:'csv', '"<img src=x onerror=alert(1)>"') > 0, 'other text is quoted as is');
SELECT ok(strpos(:'csv', 'internal: refund them') = 0, 'private notes are not exported by default');
SELECT ok(strpos(:'csv', '"1","shipping-cost","purchase","","''=HYPERLINK"') > 0, 'the codes ride along (a span starting with = is guarded too)');
SELECT ok(strpos(jd_transcript(jsonb_build_object('site_id', :site_a, 'conversation', :'conv', 'notes', true), 'csv'),
                 'internal: refund them') > 0, 'notes are exported on request');
-- Every record parses back to 17 fields (RFC 4180: quoted fields, doubled quotes).
SELECT is(array_agg(DISTINCT n), ARRAY[17], 'every record has 17 fields')
FROM (SELECT cardinality(regexp_split_to_array(regexp_replace(rec, '"([^"]|"")*"', 'F', 'g'), ',')) AS n
      FROM regexp_split_to_table(rtrim(:'csv', E'\r\n'), E'\r\n') rec) x;

-- Redaction keeps prices, dates and times.
SELECT jd_transcript(jsonb_build_object('site_id', :site_a, 'conversation', :'conv', 'redact', true), 'jsonl') AS red \gset
SELECT is((SELECT l::jsonb ->> 'body' FROM regexp_split_to_table(rtrim(:'red', E'\n'), E'\n') l WHERE (l::jsonb ->> 'seq') = '2'),
          'Reach me at [email] or [phone]; card [card]. It cost £1,299.99 on 2026-11-29, 29/11/2026 at 10:30, order 12345.',
          'redaction masks e-mails, phones and cards, and keeps prices, dates, times and short numbers');
SELECT is((SELECT l::jsonb ->> 'page' FROM regexp_split_to_table(rtrim(:'red', E'\n'), E'\n') l WHERE (l::jsonb ->> 'seq') = '1'),
          'https://a.example/cart?mail=[email]', 'and e-mails in page URLs');
SELECT ok(strpos(jd_transcript(jsonb_build_object('site_id', :site_a, 'conversation', :'conv'), 'jsonl'), 'jane.doe@example.co.uk') > 0,
          'without redaction the text is exported as written');
UPDATE sites SET redact = 'export' WHERE id = :site_a;
SELECT ok(strpos(jd_transcript(jsonb_build_object('site_id', :site_a, 'conversation', :'conv'), 'csv'), 'jane.doe') = 0,
          'a site that redacts exports is always masked');
UPDATE sites SET redact = 'off' WHERE id = :site_a;
SELECT is(jd_chat_redact(x), y, 'redact: ' || x) FROM (VALUES
    ('4111-1111-1111-1112 fails Luhn', '4111-1111-1111-1112 fails Luhn'),
    ('4012888888881881', '[card]'),
    ('Order A1234567890B', 'Order A1234567890B'),
    ('from 192.168.1.20', 'from [ip]'),
    ('+44 (0)20 7946 0958', '[phone]'),
    ('name@example.co.uk', '[email]'),
    ('12 345', '12 345')) v (x, y);

-- JSONL: one valid JSON object per message, codes inline.
SELECT jd_transcript(jsonb_build_object('site_id', :site_a, 'conversation', :'conv'), 'jsonl') AS jl \gset
SELECT is(count(*), 9::bigint, 'JSONL has one line per message') FROM regexp_split_to_table(rtrim(:'jl', E'\n'), E'\n') l;
SELECT ok(bool_and(jsonb_typeof(l::jsonb) = 'object'), 'every line is a JSON object') FROM regexp_split_to_table(rtrim(:'jl', E'\n'), E'\n') l;
SELECT is(array_agg((l::jsonb ->> 'seq')::int ORDER BY ord), ARRAY[1, 2, 3, 5, 6, 7, 8, 9, 10], 'in seq order, without the note')
FROM regexp_split_to_table(rtrim(:'jl', E'\n'), E'\n') WITH ORDINALITY AS t (l, ord);
SELECT is((SELECT l::jsonb -> 'codes' -> 0 ->> 'text' FROM regexp_split_to_table(:'jl', E'\n') l WHERE l LIKE '{%' AND (l::jsonb ->> 'seq') = '1'),
          '=HYPERLINK', 'a code carries its span text');
SELECT is((SELECT l::jsonb ->> 'agent' FROM regexp_split_to_table(:'jl', E'\n') l WHERE l LIKE '{%' AND (l::jsonb ->> 'seq') = '3'),
          'Anna', 'agent replies name the agent');

-- Plain text and HTML.
SELECT jd_transcript(jsonb_build_object('site_id', :site_a, 'conversation', :'conv'), 'text') AS txt \gset
SELECT matches(:'txt'::text, E'^== Conversation [0-9a-f-]{36}, opened [^,]+, open ==\n', 'plain text starts with the conversation');
SELECT ok(strpos(:'txt', E'#1 Visitor (https://a.example/cart?mail=visitor@example.com, stage purchase): =HYPERLINK("http://evil.example","click"), then\n    see "this"\n') > 0,
          'a visitor line shows the journey context; continuation lines are indented');
SELECT ok(strpos(:'txt', '#3 Anna: Checking') > 0, 'an agent line shows the agent');
SELECT jd_transcript(jsonb_build_object('site_id', :site_a, 'conversation', :'conv'), 'html') AS html \gset
SELECT ok(strpos(:'html', '<img') = 0, 'HTML: no markup from a message survives');
SELECT ok(strpos(:'html', '&lt;img src=x onerror=alert(1)&gt;') > 0, 'HTML: it shows as text');
SELECT ok(strpos(:'html', '=HYPERLINK(&quot;http://evil.example&quot;,&quot;click&quot;), then<br>see') > 0, 'HTML: quotes escaped, newlines as <br>');

-- Filters and access.
SELECT is(regexp_count(jd_transcript(jsonb_build_object('site_id', :site_a), 'jsonl'), E'\n'), 10,
          'a site export has every conversation of the site');
SELECT ok(strpos(jd_transcript(jsonb_build_object('site_id', :site_a), 'jsonl'), 'Site B secret') = 0,
          'and nothing of another site');
SELECT is(regexp_count(jd_transcript(jsonb_build_object('site_id', :site_b, 'conversation', :'conv'), 'jsonl'), E'\n'), 0,
          'a conversation of another site is not exported even when named');
SELECT is(regexp_count(jd_transcript(jsonb_build_object('site_id', :site_a, 'stage', 'purchase'), 'jsonl'), E'\n'), 9,
          'stage filter: conversations with a message or a code on that stage');
SELECT is(regexp_count(jd_transcript(jsonb_build_object('site_id', :site_a, 'code', 'shipping-cost'), 'jsonl'), E'\n'), 9,
          'code filter: conversations with a current code naming that obstacle');
SELECT is(regexp_count(jd_transcript(jsonb_build_object('site_id', :site_a, 'code', 'slow-site'), 'jsonl'), E'\n'), 0,
          'code filter: none for an unused obstacle');
SELECT is(regexp_count(jd_transcript(jsonb_build_object('site_id', :site_a, 'coded', true), 'jsonl'), E'\n'), 9,
          'coded: only conversations with a code');
SELECT is(regexp_count(jd_transcript(jsonb_build_object('site_id', :site_a, 'from', now() + interval '1 hour'), 'jsonl'), E'\n'), 0,
          'time window: nothing after now');
SELECT is(regexp_count(jd_transcript(jsonb_build_object('site_id', :site_a, 'to', now() - interval '1 hour'), 'jsonl'), E'\n'), 0,
          'time window: nothing before an hour ago');
SELECT is(regexp_count(jd_transcript(jsonb_build_object('site_id', :site_a, 'from', now() - interval '1 hour', 'to', now() + interval '1 hour'), 'jsonl'), E'\n'), 10,
          'time window: everything around now');
SELECT is(jd_transcript(jsonb_build_object('site_id', :site_a, 'conversation', :'conv_b'), 'csv'),
          E'conversation_id,respondent_id,consent,seq,created_at,sender,agent,kind,body,page_url,stage,touchpoint,emotions,obstacles,code_stages,code_touchpoints,coded_spans\r\n',
          'an empty CSV still has its header');
SELECT throws_ok($$SELECT jd_transcript('{"site_id":1,"sort":"x"}', 'csv')$$, 'JD400', NULL, 'an unknown filter is refused');
SELECT throws_ok($$SELECT jd_transcript('{}', 'csv')$$, 'JD400', NULL, 'site_id is required');
SELECT throws_ok($$SELECT jd_transcript('{"site_id":1,"from":"yesterday-ish"}', 'csv')$$, 'JD400', NULL, 'a bad timestamp is refused');
SELECT throws_ok($$SELECT jd_transcript('{"site_id":1}', 'pdf')$$, 'JD400', NULL, 'an unknown format is refused');

SELECT * FROM finish();
ROLLBACK;
