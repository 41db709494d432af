-- pgTAP: interview findings import (jd_import_findings and POST /maps/{id}/import): good rows are
-- stored as answers with source 'interview', bad rows are reported with their line number and
-- reason, atomic mode stores none when any row is bad, re-import is idempotent, and 10,000 rows
-- take well under 2 seconds.
BEGIN;
SELECT no_plan();

SELECT (jd_site_create('Interviews', '{https://i.example}', 'none-required', 'pgtap') ->> 'id') AS site \gset
SELECT (jd_apply_map(jsonb_build_object('site', (SELECT key FROM sites WHERE id = :site), 'slug', 'signup', 'name', 'Sign-up',
        'personas', '[{"slug":"freelancer","name":"Freelancer"},{"slug":"agency","name":"Agency owner"}]'::jsonb,
        'obstacles', '[{"slug":"price-too-high","name":"Price too high"},{"slug":"missing-feature","name":"Missing feature"}]'::jsonb,
        'touchpoints', '[{"slug":"website","name":"Website"},{"slug":"sales-call","name":"Sales call","stages":["consideration","purchase"]}]'::jsonb),
        'pgtap') ->> 'map_id') AS map \gset

CREATE TEMP TABLE rows AS SELECT '[
  {"persona":"freelancer","stage":"consideration","touchpoint":"website","action":"Compared plans","thought":"Is it worth it?",
   "emotion":2,"obstacle":"price-too-high","quote":"Forty a month is a lot","interviewee":"P01","date":"2024-05-02","goal_reached":"no"},
  {"persona":"Agency owner","stage":"Purchase","touchpoint":"Sales call","emotion":"4","goal_reached":"yes","interviewee":"P02"},
  {"persona":"freelancer","stage":"checkout","thought":"x"},
  {"persona":"ghost","stage":"purchase","thought":"x"},
  {"stage":"awareness","touchpoint":"sales-call","thought":"x"},
  {"stage":"purchase","emotion":7},
  {"stage":"purchase","obstacle":"price-too-high; no-budget"},
  {"stage":"purchase","date":"2024-02-30","thought":"x"},
  {"stage":"purchase","goal_reached":"perhaps"},
  "not an object",
  {"stage":"purchase"},
  {"thought":"no stage"},
  {"stage":"purchase","thought":"y","obstacles":["price-too-high","Missing feature"]},
  {"stage":"purchase","thought":"z","line":42}
]'::jsonb AS r;

SELECT jd_import_findings(:map, (SELECT r FROM rows), false, 'pgtap') AS res \gset
SELECT is((:'res'::jsonb ->> 'accepted')::int, 4, 'good rows are accepted');
SELECT is((:'res'::jsonb ->> 'rejected')::int, 10, 'bad rows are rejected');
SELECT is((SELECT array_agg((e ->> 'line')::int) FROM jsonb_array_elements(:'res'::jsonb -> 'errors') e),
          ARRAY[3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 'each bad row is reported with its line number');
SELECT is((SELECT jsonb_object_agg(e ->> 'line', e ->> 'reason') FROM jsonb_array_elements(:'res'::jsonb -> 'errors') e), '{
  "3": "unknown stage \"checkout\"",
  "4": "unknown persona \"ghost\"",
  "5": "touchpoint \"sales-call\" is not allowed in stage \"awareness\"",
  "6": "emotion must be an integer from 1 to 5, not \"7\"",
  "7": "unknown obstacle \"no-budget\"",
  "8": "date must be an ISO date (YYYY-MM-DD), not \"2024-02-30\"",
  "9": "goal_reached must be yes/no (true/false, met/failed), not \"perhaps\"",
  "10": "the row is not a JSON object",
  "11": "no evidence: give an action, thought, emotion, obstacle, quote or goal_reached",
  "12": "stage is required"}'::jsonb, '... and a clear reason');
SELECT is((SELECT count(*) FROM answers WHERE map_id = :map AND source = 'interview')::int, 4, 'the good rows are stored');

-- what a stored row holds
SELECT is((SELECT jsonb_build_object('persona', p.slug, 'stage', s.slug, 'touchpoint', t.slug, 'emotion', a.emotion,
                  'goal', a.goal_reached, 'obstacles', a.obstacle_ids = ARRAY[(SELECT id FROM obstacles WHERE map_id = :map AND slug = 'price-too-high')],
                  'action', a.action, 'thought', a.thought, 'quote', a.quote, 'who', a.interviewee, 'day', a.client_ts::date,
                  'site', a.site_id = :site, 'survey', a.survey_id, 'question', a.question_id)
             FROM answers a JOIN personas p ON p.id = a.persona_id JOIN stages s ON s.id = a.stage_id
             JOIN touchpoints t ON t.id = a.touchpoint_id WHERE a.map_id = :map AND a.interviewee = 'P01'),
          '{"persona":"freelancer","stage":"consideration","touchpoint":"website","emotion":2,"goal":false,"obstacles":true,
            "action":"Compared plans","thought":"Is it worth it?","quote":"Forty a month is a lot","who":"P01","day":"2024-05-02",
            "site":true,"survey":null,"question":null}'::jsonb, 'a finding is stored with every field');
SELECT is((SELECT persona_id FROM answers WHERE map_id = :map AND interviewee = 'P02'),
          (SELECT id FROM personas WHERE map_id = :map AND slug = 'agency'), 'names work as well as slugs');
SELECT is((SELECT cardinality(obstacle_ids) FROM answers WHERE map_id = :map AND thought = 'y'), 2, 'several obstacles as an array');
SELECT ok(EXISTS (SELECT 1 FROM answers WHERE map_id = :map AND thought = 'z'), 'a row with its own "line" is stored');

-- idempotent re-import
SELECT is(jd_import_findings(:map, (SELECT r FROM rows), false, 'pgtap') ->> 'inserted', '0', 're-importing the same rows stores nothing new');
SELECT is((SELECT count(*) FROM answers WHERE map_id = :map)::int, 4, '... still four answers');

-- atomic
SELECT jd_import_findings(:map, '[{"stage":"purchase","thought":"atomic 1"},{"stage":"nope","thought":"atomic 2"}]', true, 'pgtap') AS at \gset
SELECT is(:'at'::jsonb - 'errors' - 'atomic', '{"accepted":0,"rejected":1,"inserted":0}', 'atomic with a bad row: nothing accepted');
SELECT is(:'at'::jsonb #> '{errors,0}', '{"line":2,"reason":"unknown stage \"nope\""}', '... the bad row is still reported');
SELECT is((SELECT count(*) FROM answers WHERE thought LIKE 'atomic%')::int, 0, '... and nothing is stored');
SELECT is(jd_import_findings(:map, '[{"stage":"purchase","thought":"atomic 1"}]', true, 'pgtap') ->> 'accepted', '1', 'atomic, all good: stored');

-- the API route
SELECT is((SELECT status FROM jd_admin('POST', '/maps/' || :map || '/import', '{}', '[{"stage":"purchase","thought":"api"}]', 'pgtap')), 200,
          'POST /maps/{id}/import: 200');
SELECT is((SELECT status FROM jd_admin('POST', '/maps/' || :map || '/import', '{"atomic":"true"}', '[{"stage":"purchase","thought":"api 2"},{"stage":"x"}]', 'pgtap')),
          400, 'atomic import with bad rows: 400');
SELECT is((SELECT body::jsonb #>> '{errors,0,line}' FROM jd_admin('POST', '/maps/' || :map || '/import', '{}',
                  '{"rows":[{"stage":"x"}],"atomic":true}', 'pgtap')), '1', '... {"rows", "atomic"} body reports lines');
SELECT is((SELECT status FROM jd_admin('POST', '/maps/' || :map || '/import', '{}', '{"rows":5}', 'pgtap')), 400, 'a body that is not rows: 400');
SELECT is((SELECT actor || ' ' || action FROM audit_log WHERE object_type = 'map' AND object_id = :'map' ORDER BY id DESC LIMIT 1),
          'pgtap import', 'an import is audited');

-- 10,000 rows (1% bad) in well under 2 s
CREATE TEMP TABLE big AS
SELECT jsonb_agg(jsonb_build_object('persona', CASE WHEN g % 2 = 0 THEN 'freelancer' ELSE 'Agency owner' END,
        'stage', 'consideration', 'touchpoint', 'website', 'thought', 'finding ' || g, 'emotion', 1 + g % 5,
        'obstacle', CASE WHEN g % 100 = 0 THEN 'bogus' ELSE 'price-too-high' END, 'date', '2024-01-02',
        'goal_reached', CASE WHEN g % 3 = 0 THEN 'yes' ELSE 'no' END, 'interviewee', 'P' || g, 'quote', 'q' || g)) AS r
  FROM generate_series(1, 10000) g;
CREATE TEMP TABLE timing AS SELECT clock_timestamp() AS t0;
SELECT jd_import_findings(:map, (SELECT r FROM big), false, 'pgtap') - 'errors' AS bigres \gset
SELECT cmp_ok(extract(epoch FROM clock_timestamp() - (SELECT t0 FROM timing))::numeric, '<', 2.0, '10,000 rows import in under 2 s');
SELECT is(:'bigres'::jsonb - 'atomic', '{"accepted":9900,"rejected":100,"inserted":9900}', '... 9,900 stored, 100 reported');

SELECT * FROM finish();
ROLLBACK;
