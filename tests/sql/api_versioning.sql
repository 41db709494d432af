-- pgTAP: questions are immutable once answered. PATCH on an answered question retires it and
-- adds version + 1 under the same key; old answers keep pointing at the old row. An unanswered
-- question is updated in place; a PATCH that changes nothing writes nothing; DELETE retires an
-- answered question and removes an unanswered one.
BEGIN;
SELECT no_plan();

CREATE FUNCTION pg_temp.adm(m text, p text, b text DEFAULT NULL, q jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('status', a.status, 'body', a.body::jsonb) FROM jd_admin(m, p, q, b, 'pgtap') a
$$;

SELECT (jd_site_create('Versions', '{https://q.example}', 'none-required', 'pgtap') ->> 'id') AS site \gset
SELECT pg_temp.adm('POST', '/maps', format('{"site":%s,"name":"M"}', :site)) #>> '{body,id}' AS map \gset
SELECT pg_temp.adm('POST', '/maps/' || :map || '/surveys', '{"title":"S"}') #>> '{body,id}' AS sv \gset
SELECT '/surveys/' || :sv || '/questions' AS qs \gset
SELECT pg_temp.adm('POST', :'qs', '{"key":"feel","kind":"emotion","prompt":"How do you feel?","stage":"purchase","touchpoint":"website"}') #>> '{body,id}' AS q1 \gset
SELECT pg_temp.adm('POST', :'qs', '{"key":"other","kind":"text","prompt":"Anything else?"}') #>> '{body,id}' AS q2 \gset

-- unanswered: in place
SELECT is(pg_temp.adm('PATCH', :'qs' || '/' || :q1, '{"prompt":"How does this feel?"}') #>> '{body,id}', :'q1',
          'an unanswered question is updated in place');
SELECT is((SELECT version FROM questions WHERE id = :q1), 1, '... still version 1');
SELECT is((SELECT count(*) FROM questions WHERE survey_id = :sv AND key = 'feel')::int, 1, '... no second row');

-- answered: retire + version 2
INSERT INTO answers (site_id, map_id, client_id, survey_id, question_id, emotion)
VALUES (:site, :map, '00000000-0000-4000-8000-00000000a001', :sv, :q1, 2),
       (:site, :map, '00000000-0000-4000-8000-00000000a002', :sv, :q1, 5);
SELECT pg_temp.adm('PATCH', :'qs' || '/' || :q1, '{"prompt":"How do you feel right now?"}') AS r \gset
SELECT is((:'r'::jsonb ->> 'status')::int, 200, 'PATCH an answered question: 200');
SELECT isnt(:'r'::jsonb #>> '{body,id}', :'q1', '... answers with a new row');
SELECT is(:'r'::jsonb #>> '{body,version}', '2', '... version 2');
SELECT is(:'r'::jsonb #>> '{body,key}', 'feel', '... under the same key');
SELECT is(:'r'::jsonb #>> '{body,previous_id}', :'q1', '... naming the previous version');
SELECT is(:'r'::jsonb #>> '{body,stage}', 'purchase', '... keeping the fields not changed');
SELECT isnt((SELECT retired_at FROM questions WHERE id = :q1), NULL, 'the old version is retired');
SELECT is((SELECT prompt FROM questions WHERE id = :q1), 'How does this feel?', 'the old version keeps its prompt');
SELECT is((SELECT count(*) FROM answers WHERE question_id = :q1)::int, 2, 'old answers keep pointing at the old row');
SELECT (:'r'::jsonb #>> '{body,id}') AS q1v2 \gset
SELECT is((SELECT count(*) FROM answers WHERE question_id = :q1v2)::int, 0, 'the new version has no answers');
SELECT is((SELECT array_agg(e ->> 'id' ORDER BY e ->> 'key') FROM jsonb_array_elements(pg_temp.adm('GET', :'qs') #> '{body,items}') e),
          ARRAY[:'q1v2', :'q2'], 'the list shows live versions only');
SELECT is((pg_temp.adm('GET', :'qs', NULL, '{"include_retired":"true"}') #>> '{body,total}')::int, 3, '?include_retired=true shows all');
SELECT is((pg_temp.adm('GET', :'qs' || '/' || :q1) #>> '{body,retired_at}') IS NOT NULL, true, 'GET a retired version');
SELECT is((pg_temp.adm('PATCH', :'qs' || '/' || :q1, '{"prompt":"x"}') #>> '{body,error,code}'), 'retired',
          'PATCH a retired version: 409 retired');
SELECT is((pg_temp.adm('PATCH', :'qs' || '/' || :q1, '{"prompt":"x"}') ->> 'status')::int, 409, '... 409');

-- no-op PATCH does not version
INSERT INTO answers (site_id, map_id, client_id, survey_id, question_id, emotion)
VALUES (:site, :map, '00000000-0000-4000-8000-00000000a003', :sv, :q1v2, 4);
SELECT is(pg_temp.adm('PATCH', :'qs' || '/' || :q1v2, '{"prompt":"How do you feel right now?","key":"feel"}') #>> '{body,id}', :'q1v2',
          'a PATCH that changes nothing keeps the version');
SELECT is((pg_temp.adm('PATCH', :'qs' || '/' || :q1v2, '{"key":"mood"}') #>> '{body,error,field}'), 'key',
          'the key of an answered question cannot change');
SELECT is(pg_temp.adm('PATCH', :'qs' || '/' || :q1v2, '{"required":true}') #>> '{body,version}', '3', 'the next change makes version 3');

-- delete
SELECT (SELECT id FROM questions WHERE survey_id = :sv AND key = 'feel' AND retired_at IS NULL) AS q1v3 \gset
INSERT INTO answers (site_id, map_id, client_id, survey_id, question_id, emotion)
VALUES (:site, :map, '00000000-0000-4000-8000-00000000a004', :sv, :q1v3, 1);
SELECT is(pg_temp.adm('DELETE', :'qs' || '/' || :q1v3) #>> '{body,retired}', 'true', 'DELETE an answered question retires it');
SELECT is((SELECT count(*) FROM answers WHERE question_id = :q1v3)::int, 1, '... and its answers stay');
SELECT is(pg_temp.adm('DELETE', :'qs' || '/' || :q2) #>> '{body,deleted}', 'true', 'DELETE an unanswered question removes it');
SELECT is((SELECT count(*) FROM questions WHERE id = :q2)::int, 0, '... gone');
SELECT is(pg_temp.adm('POST', :'qs', '{"key":"feel","kind":"emotion","prompt":"Back again"}') #>> '{body,version}', '4',
          'a key used before continues its version numbers');

SELECT * FROM finish();
ROLLBACK;
