-- pgTAP: coded chat messages as map evidence in jd_map_export, snapshots and diffs
-- (sql/022_chat_api.sql). A small hand-computed fixture: two survey answers and four chat codes
-- (one fallback to the message's context and the session's persona, two spans of one message,
-- one without a persona), then the numbers of the cells they land in, the quotes and evidence
-- ids, respondents counted once across answers and chat, stage reach, the source, persona and
-- time filters, revisions, retractions, a second coder, redaction, consent, erasure (also from
-- saved versions) and the count(DISTINCT) respondents path. Exports of answers alone do not
-- change (tests/sql/export_*.sql cover them in full).
BEGIN;
SELECT no_plan();
SET client_min_messages TO warning;

INSERT INTO sites (key, name) VALUES ('chat-export-0001', 'Chat export shop') RETURNING id AS site \gset
INSERT INTO maps (site_id, slug, name, min_evidence) VALUES (:site, 'main', 'Main', 2) RETURNING id AS map \gset
INSERT INTO personas (map_id, slug, name, position) VALUES (:map, 'pa', 'Persona A', 1) RETURNING id AS pa \gset
INSERT INTO stages (map_id, slug, name, position) VALUES (:map, 'look', 'Look', 1) RETURNING id AS look \gset
INSERT INTO stages (map_id, slug, name, position) VALUES (:map, 'buy', 'Buy', 2) RETURNING id AS buy \gset
INSERT INTO touchpoints (map_id, slug, name, position) VALUES (:map, 'web', 'Website', 1) RETURNING id AS web \gset
INSERT INTO touchpoints (map_id, slug, name, position) VALUES (:map, 'live-chat', 'Live chat', 2) RETURNING id AS lc \gset
INSERT INTO touchpoint_stages (touchpoint_id, stage_id) VALUES (:web, :look), (:web, :buy), (:lc, :look), (:lc, :buy);
INSERT INTO obstacles (map_id, slug, name, position) VALUES (:map, 'price', 'Price', 1) RETURNING id AS price \gset
INSERT INTO obstacles (map_id, slug, name, position) VALUES (:map, 'ship', 'Shipping', 2) RETURNING id AS ship \gset
SELECT jd_agent_create(:site, 'anna@shop.example', 'Anna', 'agent', 'correct horse battery') AS anna \gset
SELECT jd_agent_create(:site, 'ben@shop.example', 'Ben', 'agent', 'correct horse battery') AS ben \gset

-- Respondents r1..r4, session sN of rN; r1, r2 and r4 are persona A, r3 has none.
INSERT INTO respondents (site_id, id) SELECT :site, ('00000000-0000-4000-8000-00000000000' || i)::uuid FROM generate_series(1, 4) i;
INSERT INTO sessions (id, site_id, respondent_id, consent_mode, consent, persona_id, started_at)
SELECT ('10000000-0000-4000-8000-00000000000' || i)::uuid, :site, ('00000000-0000-4000-8000-00000000000' || i)::uuid,
       'none-required', true, CASE WHEN i <> 3 THEN :pa END, '2026-01-10 09:00Z'
FROM generate_series(1, 4) i;
-- Two survey answers in (A, look, web): r1 emotion 4 with a quote, r2 emotion 2 reporting price.
INSERT INTO answers (site_id, map_id, client_id, source, session_id, respondent_id, persona_id, stage_id,
                     touchpoint_id, emotion, obstacle_ids, thought, created_at)
VALUES (:site, :map, gen_random_uuid(), 'survey', '10000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000001',
        :pa, :look, :web, 4, '{}', 'The homepage made it easy to compare', '2026-01-10 10:00Z')
RETURNING id AS a1 \gset
INSERT INTO answers (site_id, map_id, client_id, source, session_id, respondent_id, persona_id, stage_id,
                     touchpoint_id, emotion, obstacle_ids, created_at)
VALUES (:site, :map, gen_random_uuid(), 'survey', '10000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000002',
        :pa, :look, :web, 2, ARRAY[:price]::bigint[], '2026-01-10 10:01Z')
RETURNING id AS a2 \gset

CREATE FUNCTION pg_temp.cell(doc jsonb, k text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT c FROM jsonb_array_elements(doc -> 'cells') c WHERE c ->> 'id' = k $$;
CREATE FUNCTION pg_temp.k(p bigint, s bigint, t bigint) RETURNS text LANGUAGE sql AS $$
    SELECT jd__cell_key(p IS NULL, p, s, t IS NULL, t) $$;
-- Everything of a document that evidence decides (not generated_at or the filters echo).
CREATE FUNCTION pg_temp.body(doc jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT doc - 'generated_at' - 'filters' $$;

CREATE TEMP TABLE docs (name text PRIMARY KEY, doc jsonb);
INSERT INTO docs VALUES ('answers only', jd_map_export(:map, '{}'));

-- Conversations: c1 of r1 (messages m1 visitor, m2 agent, m3 visitor), c2 of r3 (m4), c3 of r2
-- (m5, never coded).
SELECT conversation_id AS c1 FROM jd_chat_open(:site, '00000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', NULL, 'https://shop.example/', NULL, NULL) \gset
SELECT conversation_id AS c2 FROM jd_chat_open(:site, '00000000-0000-4000-8000-000000000003', '10000000-0000-4000-8000-000000000003', NULL, 'https://shop.example/', NULL, NULL) \gset
SELECT conversation_id AS c3 FROM jd_chat_open(:site, '00000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000002', NULL, 'https://shop.example/', NULL, NULL) \gset
CREATE FUNCTION pg_temp.m(conv uuid, body text, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('conversation_id', conv, 'site_id', (SELECT site_id FROM conversations WHERE id = conv),
                              'client_id', gen_random_uuid(), 'body', body) || extra $$;
SELECT jd_chat_insert(jsonb_build_array(
    pg_temp.m(:'c1', 'Shipping costs more than the shoes themselves!', jsonb_build_object('stage_id', :look, 'touchpoint_id', :lc)),
    pg_temp.m(:'c1', 'Let me check that for you', jsonb_build_object('sender', 'agent', 'agent_id', :anna)),
    pg_temp.m(:'c1', 'Where is my parcel? Call me on +44 20 7946 0958', jsonb_build_object('stage_id', :look, 'touchpoint_id', :lc)),
    pg_temp.m(:'c2', 'Too expensive for me, sorry', jsonb_build_object('stage_id', :buy, 'touchpoint_id', :web)),
    pg_temp.m(:'c3', 'Just looking around', jsonb_build_object('stage_id', :look, 'touchpoint_id', :web)))) \g /dev/null
UPDATE messages SET created_at = timestamptz '2026-01-10 11:00Z' + make_interval(mins => seq::int)
 WHERE conversation_id IN (:'c1', :'c2', :'c3');
SELECT id AS m1 FROM messages WHERE conversation_id = :'c1' AND seq = 1 \gset
SELECT id AS m3 FROM messages WHERE conversation_id = :'c1' AND seq = 3 \gset
SELECT id AS m4 FROM messages WHERE conversation_id = :'c2' AND seq = 1 \gset

SELECT is(pg_temp.body(jd_map_export(:map, '{}')), pg_temp.body(doc), 'conversations without codes change nothing')
FROM docs WHERE name = 'answers only';

-- The codes.
SELECT (jd_code_message(:anna, :m1, NULL, NULL, 1, ARRAY['ship'], NULL, NULL) ->> 'id')::bigint AS k1 \gset
SELECT (jd_code_message(:anna, :m3, 0, 19, 2, NULL, 'look', 'web') ->> 'id')::bigint AS k2 \gset
SELECT (jd_code_message(:anna, :m3, 20, 47, 3, NULL, 'look', 'web') ->> 'id')::bigint AS k3 \gset
SELECT (jd_code_message(:anna, :m4, NULL, NULL, 3, ARRAY['price'], 'buy', NULL) ->> 'id')::bigint AS k4 \gset
SELECT is(count(*), 4::bigint, 'fixture: four rows of chat evidence') FROM chat_evidence WHERE map_id = :map;

INSERT INTO docs VALUES ('with chat', jd_map_export(:map, '{}'));
SELECT doc AS d FROM docs WHERE name = 'with chat' \gset

-- (A, look, web): answers 4 and 2, chat spans 2 and 3 of m3.
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :web)) -> 'n', '4', 'A/look/web: 2 answers + 2 coded spans');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :web)) #> '{emotion,mean}', '2.7500', '... mean (4+2+2+3)/4');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :web)) #> '{emotion,distribution}', '[0, 2, 1, 1, 0]', '... distribution');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :web)) #> '{emotion,sd}', '0.9574', '... sample sd');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :web)) -> 'respondents', '2',
          '... respondents r1 (an answer and a chat) and r2: r1 counts once');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :web)) -> 'thin', 'false', '... not thin');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :web)) -> 'evidence',
          jsonb_build_array('answer:' || :a2, 'message:' || :m3, 'answer:' || :a1),
          '... evidence: answers and chat messages in turns, newest first, m3 once for its two spans');
SELECT is((SELECT jsonb_agg(jsonb_build_array(q ->> 'text', q ->> 'evidence', q ->> 'source'))
             FROM jsonb_array_elements(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :web)) -> 'quotes') q),
          jsonb_build_array(jsonb_build_array('Call me on +44 20 7946 0958', 'message:' || :m3, 'chat'),
                            jsonb_build_array('The homepage made it easy to compare', 'answer:' || :a1, 'survey'),
                            jsonb_build_array('Where is my parcel?', 'message:' || :m3, 'chat')),
          '... quotes: the coded spans as chat quotes with message evidence ids, 20-280 characters first, then newest');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :web)) -> 'obstacles',
          jsonb_build_array(jsonb_build_object('id', :price, 'slug', 'price', 'name', 'Price', 'count', 1, 'share', 1.0)),
          '... obstacles unchanged by codes without obstacles');

-- (A, look, live-chat): k1 has no stage, touchpoint or persona: the message's context and the
-- session's persona.
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :lc)) -> 'n', '1', 'A/look/live-chat: the fallback code lands here');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :lc)) #> '{emotion,distribution}', '[1, 0, 0, 0, 0]', '... with its emotion');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :lc)) -> 'obstacle_answers', '1', '... an obstacle report');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :lc)) -> 'obstacles',
          jsonb_build_array(jsonb_build_object('id', :ship, 'slug', 'ship', 'name', 'Shipping', 'count', 1, 'share', 1.0)),
          '... shipping counted');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :lc)) -> 'thin', 'true', '... thin (n 1 < min_evidence 2)');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :lc)) #> '{quotes,0,evidence}', to_jsonb('message:' || :m1), '... quoted as message:m1');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :lc)) #> '{quotes,0,text}', '"Shipping costs more than the shoes themselves!"', '... the whole message');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, :lc)) -> 'evidence', jsonb_build_array('message:' || :m1), '... evidence');

-- Rollups.
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, NULL)) -> 'n', '5', 'A/look rollup: 2 answers + 3 codes');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, NULL)) #> '{emotion,mean}', '2.4000', '... mean (4+2+1+2+3)/5');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, NULL)) -> 'respondents', '2', '... r1 and r2');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :look, NULL)) -> 'obstacle_answers', '2', '... two obstacle reports (an answer and a chat)');
SELECT is(pg_temp.cell(:'d', pg_temp.k(NULL, :look, NULL)) -> 'n', '5', 'all/look: the same five');
-- k4: no persona (r3's session has none): the all-personas cells only.
SELECT is(pg_temp.cell(:'d', pg_temp.k(NULL, :buy, :web)) -> 'n', '1', 'all/buy/web: the code without a persona');
SELECT is(pg_temp.cell(:'d', pg_temp.k(NULL, :buy, :web)) -> 'respondents', '1', '... r3');
SELECT is(pg_temp.cell(:'d', pg_temp.k(NULL, :buy, :web)) #> '{obstacles,0,slug}', '"price"', '... price');
SELECT is(pg_temp.cell(:'d', pg_temp.k(:pa, :buy, :web)) -> 'n', '0', 'A/buy/web: nothing (no persona)');
SELECT is(pg_temp.cell(:'d', pg_temp.k(NULL, :buy, NULL)) -> 'evidence', jsonb_build_array('message:' || :m4), 'all/buy evidence');
-- Stage reach: r3's session reached "buy" by its coded chat message only.
SELECT is(:'d'::jsonb #> '{stage_metrics,sessions}', '3', 'three sessions reached a stage (s3 by chat alone)');
SELECT is((SELECT s -> 'sessions_reached' FROM jsonb_array_elements(:'d'::jsonb #> '{stage_metrics,stages}') s
            WHERE (s ->> 'stage_id')::bigint = :buy), '1', '"buy" was reached by one session');
SELECT is(jsonb_path_query_array(:'d'::jsonb, '$.cells[*].quotes[*].evidence') @> to_jsonb(ARRAY['message:' || :m4]), true,
          'the code of r3''s message is quoted');
SELECT ok(NOT (jsonb_path_query_array(:'d'::jsonb, '$.cells[*].evidence[*]') ? ('message:' || (SELECT id FROM messages WHERE conversation_id = :'c3'))),
          'uncoded messages are no evidence');

-- Filters.
SELECT is(pg_temp.body(jd_map_export(:map, '{"source":["survey","interview"]}')), pg_temp.body(doc),
          'without the chat source the document is the answers-only one') FROM docs WHERE name = 'answers only';
SELECT is(pg_temp.cell(jd_map_export(:map, '{"source":"chat"}'), pg_temp.k(:pa, :look, :web)) #> '{emotion,mean}', '2.5000',
          'source chat: the two spans only');
SELECT is(pg_temp.cell(jd_map_export(:map, '{"source":"chat"}'), pg_temp.k(:pa, :look, :web)) -> 'evidence',
          jsonb_build_array('message:' || :m3), '... and only message evidence');
SELECT is(pg_temp.cell(jd_map_export(:map, '{"persona":"pa"}'), pg_temp.k(NULL, :buy, NULL)) -> 'n', '0',
          'persona filter: the code without a persona is out');
SELECT is(pg_temp.cell(jd_map_export(:map, '{"persona":"pa"}'), pg_temp.k(:pa, :look, NULL)) -> 'n', '5', '... persona A''s are in');
SELECT is(pg_temp.cell(jd_map_export(:map, '{"from":"2026-01-10T11:02:00Z"}'), pg_temp.k(:pa, :look, :web)) -> 'n', '2',
          'time window: by when the visitor wrote (m3 at 11:03 in, the answers at 10:00 out)');
SELECT is(pg_temp.cell(jd_map_export(:map, '{"to":"2026-01-10T11:00:00Z"}'), pg_temp.k(:pa, :look, :web)) -> 'n', '2',
          '... and before 11:00 the answers only');

-- The exact respondents path (personas x touchpoints beyond 63 bits) agrees with the bit masks.
SAVEPOINT wide;
INSERT INTO touchpoints (map_id, slug, name, position) SELECT :map, 'extra-' || i, 'Extra ' || i, 10 + i FROM generate_series(1, 40) i;
SELECT is((SELECT jsonb_object_agg(c ->> 'id', c -> 'respondents') FROM jsonb_array_elements(jd_map_export(:map, '{}') -> 'cells') c),
          (SELECT jsonb_object_agg(c ->> 'id', c -> 'respondents') FROM jsonb_array_elements(:'d'::jsonb -> 'cells') c),
          'count(DISTINCT) fallback: the same respondents per cell with chat evidence');
ROLLBACK TO SAVEPOINT wide;

-- Snapshots and diff.
SELECT jd_map_snapshot(:map, '{"source":"survey"}') \g /dev/null
SELECT jd_map_snapshot(:map, '{}') \g /dev/null
SELECT is((SELECT c #> '{n}' FROM jsonb_array_elements(jd_map_diff(:map, 1, 2) -> 'cells') c WHERE c ->> 'id' = pg_temp.k(:pa, :look, :web)),
          '{"v1": 2, "v2": 4, "change": 2}', 'diff: survey only -> with chat');
SELECT is((SELECT c #> '{emotion,change}' FROM jsonb_array_elements(jd_map_diff(:map, 1, 2) -> 'cells') c WHERE c ->> 'id' = pg_temp.k(:pa, :look, :web)),
          '-0.2500', '... the emotion change 3 -> 2.75');

-- A revision counts once with its new values; a retraction drops the span; a later coder wins.
SELECT jd_code_revise(:anna, :k2, 0, 19, 5, NULL, 'look', 'web') \g /dev/null
SELECT is(pg_temp.cell(jd_map_export(:map, '{}'), pg_temp.k(:pa, :look, :web)) #> '{emotion,mean}', '3.5000',
          'revised span: (4+2+5+3)/4');
SELECT jd_code_retract(:anna, :k3) \g /dev/null
SELECT is(pg_temp.cell(jd_map_export(:map, '{}'), pg_temp.k(:pa, :look, :web)) -> 'n', '3', 'retracted span: gone');
SELECT jd_code_message(:ben, :m1, NULL, NULL, 5, NULL, NULL, NULL) \g /dev/null
SELECT is(pg_temp.cell(jd_map_export(:map, '{}'), pg_temp.k(:pa, :look, :lc)) #> '{emotion,distribution}', '[0, 0, 0, 0, 1]',
          'a second coder of the same message: the later code wins, counted once');

-- Redaction: sites with redact = export mask chat quotes.
UPDATE sites SET redact = 'export' WHERE id = :site;
SELECT is((SELECT jsonb_agg(q ->> 'text') FROM jsonb_array_elements(pg_temp.cell(jd_map_export(:map, '{}'), pg_temp.k(:pa, :look, :web)) -> 'quotes') q
            WHERE q ->> 'source' = 'chat'), '["Where is my parcel?"]', 'after the retraction one chat quote is left in the cell');
SELECT jd_code_message(:anna, :m3, 20, 47, 3, NULL, 'look', 'web') \g /dev/null
SELECT ok(pg_temp.cell(jd_map_export(:map, '{}'), pg_temp.k(:pa, :look, :web))::text LIKE '%Call me on [phone]%',
          '... a coded phone number is masked in the quote');
SELECT ok(pg_temp.cell(jd_map_export(:map, '{}'), pg_temp.k(:pa, :look, :web))::text NOT LIKE '%7946%', '... and nowhere in the cell');
UPDATE sites SET redact = 'off' WHERE id = :site;

-- Consent: on an opt-in site a chat without a consenting session is no evidence.
UPDATE sites SET consent_mode = 'opt-in' WHERE id = :site;
UPDATE sessions SET consent = false WHERE id = '10000000-0000-4000-8000-000000000003';
SELECT is(pg_temp.cell(jd_map_export(:map, '{}'), pg_temp.k(NULL, :buy, :web)) -> 'n', '0', 'opt-in without consent: no chat evidence');
UPDATE sessions SET consent = true WHERE id = '10000000-0000-4000-8000-000000000003';
UPDATE sites SET consent_mode = 'none-required' WHERE id = :site;

-- Erasure: r1's chat and answers leave the export; saved versions keep their numbers but lose
-- r1's chat quotes (and answer quotes).
SELECT jd_map_snapshot(:map, '{}') AS v3 \gset
SELECT ok(:'v3'::text LIKE '%Shipping costs more than the shoes themselves!%', 'version 3 quotes m1');
SELECT jd_erase_respondent(:site, '00000000-0000-4000-8000-000000000001') \g /dev/null
SELECT is(pg_temp.cell(jd_map_export(:map, '{}'), pg_temp.k(:pa, :look, :lc)) -> 'n', '0', 'after erasure: r1''s chat is gone from the export');
SELECT is(pg_temp.cell(jd_map_export(:map, '{}'), pg_temp.k(:pa, :look, :web)) -> 'n', '1', '... and so is r1''s answer (r2''s stays)');
SELECT ok((SELECT document::text FROM map_versions WHERE map_id = :map AND version = 3) NOT LIKE '%Shipping costs more%',
          'the saved version lost the erased chat quote');
SELECT ok((SELECT document::text FROM map_versions WHERE map_id = :map AND version = 3) NOT LIKE '%Where is my parcel%',
          '... every one of them');
SELECT is((SELECT c -> 'n' FROM map_versions v, jsonb_array_elements(v.document -> 'cells') c
            WHERE v.map_id = :map AND v.version = 3 AND c ->> 'id' = pg_temp.k(:pa, :look, :lc)), '1',
          '... and kept its aggregates');
SELECT ok((SELECT document::text FROM map_versions WHERE map_id = :map AND version = 3) LIKE '%Too expensive for me%',
          '... other visitors'' quotes stay');
-- Purging a conversation by retention drops its quotes from versions too.
UPDATE sites SET retention_days = 30 WHERE id = :site;
UPDATE conversations SET created_at = now() - interval '60 days', last_message_at = now() - interval '60 days' WHERE id = :'c2';
SELECT ok(jd_chat_purge_expired(1000) >= 1, 'retention purges r3''s conversation');
SELECT ok((SELECT document::text FROM map_versions WHERE map_id = :map AND version = 3) NOT LIKE '%Too expensive for me%',
          '... and its quote leaves the saved version');

SELECT * FROM finish();
ROLLBACK;
