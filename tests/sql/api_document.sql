-- pgTAP: map as code. jd_apply_map creates a map from a document; jd_map_document dumps it;
-- apply -> dump round-trips identically; applying twice changes nothing; apply updates by slug;
-- errors name the field; prune removes what the document no longer lists; the API's
-- GET/PUT /maps/{id}/document do the same.
BEGIN;
SELECT no_plan();

SELECT (jd_site_create('Docs', '{https://d.example}', 'none-required', 'pgtap') ->> 'key') AS key \gset
CREATE TEMP TABLE doc AS SELECT jsonb_build_object(
  'version', 1, 'site', :'key', 'slug', 'leave-a-review', 'name', 'Leaving a review after purchase',
  'goal', 'More reviews', 'scope', 'From delivery to review', 'customer_group', 'Recent buyers', 'min_evidence', 3,
  'personas', '[{"slug":"fan","name":"Fan","age_min":20,"age_max":35,"job_role":"","family_status":"","professional_goals":"",
                 "personal_interests":"","description":"Loves us","data_sources":"Survey 2024"},
                {"slug":"critic","name":"Critic","age_min":null,"age_max":null,"job_role":"Editor","family_status":"",
                 "professional_goals":"","personal_interests":"","description":"","data_sources":""}]'::jsonb,
  'stages', '[{"slug":"delivery","name":"Delivery","meaning":"The parcel arrives",
               "resources":[{"kind":"department","name":"Logistics","notes":"","owner":"Kim"}]},
              {"slug":"review","name":"Review","meaning":"The customer writes a review","resources":[]}]'::jsonb,
  'touchpoints', '[{"slug":"email","name":"Email","channel":"owned","stages":["delivery","review"]},
                   {"slug":"review-site","name":"Review site","channel":"earned","stages":["review"]}]'::jsonb,
  'obstacles', '[{"slug":"no-time","name":"No time","description":""},{"slug":"form-too-long","name":"Form too long","description":"x"}]'::jsonb,
  'surveys', '[{"slug":"after-review","title":"Thanks!","status":"live","locale":"en","display":{"mode":"modal"},
                "trigger":{"url":{"op":"contains","value":"/review/done"}},
                "questions":[{"key":"nps","kind":"nps","lane":null,"prompt":"Recommend us?","required":true,"options":null,
                              "stage":"review","touchpoint":"review-site","show_if":null},
                             {"key":"why","kind":"text","lane":"thoughts","prompt":"Why?","required":false,"options":null,
                              "stage":"review","touchpoint":"review-site","show_if":{"question":"nps","min":0,"max":6}},
                             {"key":"blockers","kind":"obstacle","lane":"obstacles","prompt":"What got in the way?","required":false,
                              "options":null,"stage":"review","touchpoint":"email","show_if":null}]}]'::jsonb) AS d;

SELECT is(jd_apply_map((SELECT d FROM doc), 'pgtap') ->> 'created', 'true', 'apply creates the map');
SELECT (SELECT id FROM maps WHERE slug = 'leave-a-review') AS map \gset
SELECT is((SELECT count(*) FROM stages WHERE map_id = :map)::int, 2, 'only the document''s stages (no defaults)');
CREATE TEMP TABLE dump1 AS SELECT jd_map_document(:map) AS d;
SELECT is((SELECT d FROM dump1) - 'surveys', (SELECT d FROM doc) - 'surveys', 'the dump equals the applied document (but for normalised show_if)');
SELECT is((SELECT d FROM dump1) #> '{surveys,0,questions,1,show_if,in}', '["0","1","2","3","4","5","6"]', 'score ranges are normalised');

SELECT is(jd_apply_map((SELECT d FROM dump1), 'pgtap') ->> 'changed', 'false', 'applying the dump changes nothing');
SELECT is(jd_map_document(:map), (SELECT d FROM dump1), 'dump -> apply -> dump round-trips identically');
SELECT is(jd_apply_map((SELECT d FROM doc), 'pgtap') ->> 'changed', 'false', 'applying the same document twice: no change');
SELECT is((SELECT count(*) FROM questions q JOIN surveys s ON s.id = q.survey_id WHERE s.map_id = :map)::int, 3,
          '... and no new question versions');

-- updates by slug; answered questions are versioned, not rewritten
INSERT INTO answers (site_id, map_id, client_id, survey_id, question_id, score)
SELECT m.site_id, m.id, gen_random_uuid(), q.survey_id, q.id, 9
  FROM questions q JOIN surveys s ON s.id = q.survey_id JOIN maps m ON m.id = s.map_id WHERE m.id = :map AND q.key = 'nps';
CREATE TEMP TABLE doc2 AS
SELECT jsonb_set(jsonb_set(jsonb_set(d, '{stages,0,name}', '"Parcel delivery"'),
                 '{surveys,0,questions,0,prompt}', '"Would you recommend us?"'),
                 '{personas}', (d -> 'personas') || '[{"slug":"lurker","name":"Lurker"}]') AS d FROM dump1;
SELECT is(jd_apply_map((SELECT d FROM doc2), 'pgtap') ->> 'changed', 'true', 'a changed document applies');
SELECT is((SELECT name FROM stages WHERE map_id = :map AND slug = 'delivery'), 'Parcel delivery', 'the stage is renamed in place');
SELECT is((SELECT array_agg(version ORDER BY version) FROM questions q JOIN surveys s ON s.id = q.survey_id
            WHERE s.map_id = :map AND q.key = 'nps'), ARRAY[1, 2], 'the answered question got version 2');
SELECT is((SELECT count(*) FROM personas WHERE map_id = :map)::int, 3, 'a persona is added');
SELECT is(jd_apply_map(jd_map_document(:map), 'pgtap') ->> 'changed', 'false', 'and again the dump applies as a no-op');

-- errors name the field and store nothing
SELECT throws_like(format($$SELECT jd_apply_map(%L, 'pgtap')$$,
    jsonb_set((SELECT d FROM doc2), '{touchpoints,1,stages}', '["review","checkout"]')),
    'unknown stage "checkout"%', 'an unknown stage in a touchpoint is refused');
CREATE FUNCTION pg_temp.apply_error(d jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text; m text;
BEGIN
    PERFORM jd_apply_map(d, 'pgtap');
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT, m = PG_EXCEPTION_DETAIL;
    RETURN m || ' ' || h;
END $$;
SELECT is(pg_temp.apply_error(jsonb_set((SELECT d FROM doc2), '{touchpoints,1,stages}', '["review","checkout"]')),
          'unknown_stage touchpoints[1].stages[1]', 'the error names touchpoints[1].stages[1]');
SELECT is(pg_temp.apply_error(jsonb_set((SELECT d FROM doc2), '{surveys,0,questions,2,touchpoint}', '"review-site"')),
          'no error', 'a valid change applies');
SELECT is(pg_temp.apply_error(jsonb_set((SELECT d FROM doc2), '{surveys,0,questions,0,stage}', '"delivery"')),
          'touchpoint_not_allowed surveys[0].questions[0].touchpoint', 'a question in a stage its touchpoint is not allowed in');
SELECT is(pg_temp.apply_error(jsonb_set((SELECT d FROM doc2), '{personas,0,age_min}', '50')),
          'invalid_range personas[0].age_min', 'an inverted age range');
SELECT is(pg_temp.apply_error(jsonb_set((SELECT d FROM doc2), '{surveys,0,questions,0,show_if}', '{"question":"why","equals":"x"}')),
          'cycle surveys[0].questions.question', 'a branching cycle');
SELECT is(pg_temp.apply_error((SELECT d FROM doc2) || '{"site":"no-such-site-key"}'), 'unknown_site site', 'an unknown site');
SELECT is(pg_temp.apply_error(jsonb_set((SELECT d FROM doc2), '{stages,1,slug}', '"delivery"')),
          'duplicate stages[1].slug', 'a slug listed twice');
SELECT is(jd_map_document(:map) #>> '{stages,0,name}', 'Parcel delivery', 'failed applies left the map as it was');

-- prune
SELECT is(pg_temp.apply_error(jsonb_set((SELECT d FROM doc2), '{obstacles}', '[{"slug":"no-time","name":"No time"}]') || '{"prune":true}'),
          'no error', 'prune');
SELECT is((SELECT array_agg(slug) FROM obstacles WHERE map_id = :map), ARRAY['no-time'], '... removes obstacles the document no longer lists');
SELECT is(pg_temp.apply_error(jsonb_set((SELECT d FROM doc2), '{surveys,0,questions}', '[{"key":"why","kind":"text","prompt":"Why?","show_if":null}]') || '{"prune":true}'),
          'no error', 'prune questions');
SELECT is((SELECT array_agg(key || ':' || (retired_at IS NULL)::text ORDER BY key, version) FROM questions q JOIN surveys s ON s.id = q.survey_id
            WHERE s.map_id = :map), ARRAY['nps:false', 'why:true'],
          '... retires answered ones (nps v1), deletes unanswered ones (nps v2, blockers), keeps the listed one');

-- the API
SELECT is((SELECT status FROM jd_admin('GET', '/maps/' || :map || '/document', '{}', NULL, 'pgtap')), 200, 'GET /maps/{id}/document');
SELECT is((SELECT body::jsonb FROM jd_admin('GET', '/maps/' || :map || '/document', '{}', NULL, 'pgtap')), jd_map_document(:map), '... is the dump');
SELECT is((SELECT body::jsonb ->> 'changed' FROM jd_admin('PUT', '/maps/' || :map || '/document', '{}', jd_map_document(:map)::text, 'pgtap')),
          'false', 'PUT the dump back: no change');
SELECT is((SELECT body::jsonb #>> '{error,field}' FROM jd_admin('PUT', '/maps/' || :map || '/document', '{}',
                  jsonb_set(jd_map_document(:map), '{personas,0,age_min}', '99')::text, 'pgtap')),
          'personas[0].age_min', 'PUT an invalid document: 400 naming the field');

SELECT * FROM finish();
ROLLBACK;
