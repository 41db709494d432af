-- pgTAP: admin API validation -> 400 {"error":{"code","message","field"}}: unknown stage, a
-- touchpoint not allowed in a stage, a persona from another map, duplicate names and slugs
-- (code duplicate), inverted ranges, branching that refers to an unknown question or loops.
BEGIN;
SELECT no_plan();

CREATE FUNCTION pg_temp.adm(m text, p text, b text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('status', a.status, 'body', a.body::jsonb) FROM jd_admin(m, p, '{}', b, 'pgtap') a
$$;
-- status, code and field of an error response, e.g. '400 duplicate slug'
CREATE FUNCTION pg_temp.e(m text, p text, b text DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
    SELECT concat_ws(' ', r ->> 'status', r #>> '{body,error,code}', r #>> '{body,error,field}') FROM pg_temp.adm(m, p, b) r
$$;

SELECT (jd_site_create('Validation', '{https://v.example}', 'none-required', 'pgtap') ->> 'id') AS site \gset
SELECT pg_temp.adm('POST', '/maps', format('{"site":%s,"name":"Map one"}', :site)) #>> '{body,id}' AS map \gset
SELECT pg_temp.adm('POST', '/maps', format('{"site":%s,"name":"Map two"}', :site)) #>> '{body,id}' AS map2 \gset
SELECT pg_temp.adm('POST', '/maps/' || :map || '/personas', '{"name":"Parent","age_min":30,"age_max":45}') #>> '{body,id}' AS parent \gset
SELECT pg_temp.adm('POST', '/maps/' || :map2 || '/personas', '{"name":"Student"}') #>> '{body,id}' AS student \gset
SELECT pg_temp.adm('POST', '/maps/' || :map || '/touchpoints', '{"name":"Kiosk","stages":["purchase"]}') #>> '{body,id}' AS kiosk \gset
SELECT pg_temp.adm('POST', '/maps/' || :map || '/surveys', '{"title":"Pulse"}') #>> '{body,id}' AS sv \gset
SELECT '/surveys/' || :sv || '/questions' AS qs \gset

-- unknown stage
SELECT is(pg_temp.e('POST', :'qs', '{"kind":"emotion","prompt":"How?","stage":"checkout"}'), '400 unknown_stage stage',
          'a question with an unknown stage');
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/touchpoints', '{"name":"Fax","stages":["purchase","nowhere"]}'),
          '400 unknown_stage stages[1]', 'a touchpoint allowed in an unknown stage names the element');
SELECT is(pg_temp.e('POST', :'qs', format('{"kind":"emotion","prompt":"How?","stage_id":%s}',
                                          (SELECT id FROM stages WHERE map_id = :map2 LIMIT 1))),
          '400 wrong_map stage_id', 'a stage id of another map');
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/surveys', '{"title":"T","trigger":{"stage":"nowhere"}}'),
          '400 unknown_stage trigger.stage', 'a trigger with an unknown stage');

-- touchpoint not allowed in the stage
SELECT is(pg_temp.e('POST', :'qs', '{"kind":"emotion","prompt":"How?","stage":"awareness","touchpoint":"kiosk"}'),
          '400 touchpoint_not_allowed touchpoint', 'a question whose touchpoint is not allowed in its stage');
SELECT is(pg_temp.adm('POST', :'qs', '{"kind":"emotion","prompt":"How?","stage":"awareness","touchpoint":"kiosk"}') #>> '{body,error,message}',
          'touchpoint "kiosk" is not allowed in stage "awareness"', '... with a clear message');
SELECT is(pg_temp.adm('POST', :'qs', '{"key":"feel","kind":"emotion","prompt":"How?","stage":"purchase","touchpoint":"kiosk"}') ->> 'status',
          '201', 'the allowed combination is accepted');
SELECT is(pg_temp.e('PATCH', :'qs' || '/' || (SELECT id FROM questions WHERE survey_id = :sv AND key = 'feel'), '{"stage":"interest"}'),
          '400 touchpoint_not_allowed touchpoint', 'moving the question to a stage the touchpoint is not allowed in');
SELECT is(pg_temp.e('POST', '/sites/' || :site || '/rules', format('{"kind":"url","match":{"pattern":"/x"},"map":%s,"stage":"awareness","touchpoint":"kiosk"}', :map)),
          '400 touchpoint_not_allowed touchpoint', 'a rule with a touchpoint not allowed in its stage');

-- persona from another map
SELECT is(pg_temp.e('POST', '/sites/' || :site || '/rules', format('{"kind":"persona_attribute","match":{"attribute":"a","value":"b"},"map":%s,"persona":%s}', :map, :student)),
          '400 wrong_map persona', 'a rule with a persona of another map');
SELECT is(pg_temp.e('POST', '/sites/' || :site || '/rules', format('{"kind":"persona_attribute","match":{"attribute":"a","value":"b"},"map":%s,"persona":"student"}', :map)),
          '400 unknown_persona persona', 'a rule with a persona slug of another map');
SELECT is(pg_temp.e('POST', :'qs', format('{"kind":"single_choice","prompt":"You are?","options":[{"value":"p","persona":"parent"},{"value":"s","persona":%s}]}', :student)),
          '400 wrong_map options[1].persona', 'a screener option mapped to a persona of another map');
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/surveys', '{"title":"T","trigger":{"persona":"student"}}'),
          '400 unknown_persona trigger.persona', 'a survey targeted at a persona of another map');
SELECT is(pg_temp.e('PATCH', '/sites/' || :site || '/rules/' ||
             (pg_temp.adm('POST', '/sites/' || :site || '/rules', format('{"kind":"persona_attribute","match":{"attribute":"a","value":"b"},"map":%s,"persona":"parent"}', :map)) #>> '{body,id}'),
             format('{"map":%s}', :map2)),
          '400 wrong_map persona', 'moving a rule to another map keeps its persona honest');

-- duplicates
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/personas', '{"name":"parent"}'), '400 duplicate slug', 'a duplicate persona (slug)');
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/personas', '{"name":"PARENT","slug":"parent-2"}'), '400 duplicate name',
          'a duplicate persona name (case-insensitive)');
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/stages', '{"name":"Purchase","slug":"buy"}'), '400 duplicate name', 'a duplicate stage name');
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/touchpoints', '{"name":"Web","slug":"website"}'), '400 duplicate slug', 'a duplicate touchpoint slug');
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/obstacles', '{"name":"Price"}'), '201', 'an obstacle');
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/obstacles', '{"name":"price"}'), '400 duplicate slug', 'a duplicate obstacle');
SELECT is(pg_temp.e('POST', '/maps', format('{"site":%s,"name":"Map one"}', :site)), '400 duplicate slug', 'a duplicate map');
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/surveys', '{"title":"Pulse"}'), '400 duplicate slug', 'a duplicate survey slug');
SELECT is(pg_temp.e('POST', :'qs', '{"key":"feel","kind":"text","prompt":"Again"}'), '400 duplicate key', 'a duplicate question key');
SELECT is(pg_temp.e('PATCH', '/maps/' || :map || '/personas/' || :parent, '{"name":"Parent"}'), '200', 'keeping its own name is fine');
SELECT is(pg_temp.e('POST', :'qs', '{"key":"pick","kind":"single_choice","prompt":"?","options":[{"value":"a"},{"value":"a"}]}'),
          '400 duplicate options[1].value', 'a duplicate option value');
SELECT is(pg_temp.e('POST', '/stages/' || (SELECT id FROM stages WHERE map_id = :map AND slug = 'purchase') || '/resources',
                    '{"kind":"process","name":"Refunds"}'), '201', 'a resource');
SELECT is(pg_temp.e('POST', '/stages/' || (SELECT id FROM stages WHERE map_id = :map AND slug = 'purchase') || '/resources',
                    '{"kind":"process","name":"refunds"}'), '400 duplicate name', 'a duplicate resource');

-- inverted ranges
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/personas', '{"name":"Retiree","age_min":70,"age_max":60}'),
          '400 invalid_range age_min', 'age_min > age_max');
SELECT is(pg_temp.e('PATCH', '/maps/' || :map || '/personas/' || :parent, '{"age_min":50}'), '400 invalid_range age_min',
          'a PATCH that inverts the stored range');
SELECT is(pg_temp.adm('POST', :'qs', '{"key":"nps","kind":"nps","prompt":"Recommend?"}') ->> 'status', '201', 'an NPS question');
SELECT is(pg_temp.e('POST', :'qs', '{"key":"why","kind":"text","prompt":"Why?","show_if":{"question":"nps","min":6,"max":0}}'),
          '400 invalid_range show_if.min', 'a branching score range min > max');
SELECT is(pg_temp.adm('POST', :'qs', '{"key":"why","kind":"text","prompt":"Why?","show_if":{"question":"nps","min":0,"max":6}}') #> '{body,show_if,in}',
          '["0","1","2","3","4","5","6"]', 'a score range is stored with the values the widget tests');
SELECT is(pg_temp.e('POST', '/sites/' || :site || '/rules',
             format('{"kind":"screener","match":{"survey":"pulse","question":"nps","min":9,"max":7},"map":%s,"persona":"parent"}', :map)),
          '400 invalid_range match.min', 'a screener score range min > max');
SELECT is(pg_temp.e('POST', :'qs', '{"key":"r2","kind":"text","prompt":"?","show_if":{"question":"why","min":1,"max":2}}'),
          '400 invalid_value show_if.min', 'a score range on a text question');

-- branching
SELECT is(pg_temp.e('POST', :'qs', '{"key":"b","kind":"text","prompt":"?","show_if":{"question":"nosuch","equals":"x"}}'),
          '400 unknown_question show_if.question', 'show_if on an unknown question');
SELECT is(pg_temp.e('POST', :'qs', '{"key":"self","kind":"text","prompt":"?","show_if":{"question":"self","equals":"x"}}'),
          '400 cycle show_if.question', 'show_if on itself');
SELECT is(pg_temp.e('PATCH', :'qs' || '/' || (SELECT id FROM questions WHERE survey_id = :sv AND key = 'nps'),
                    '{"show_if":{"question":"why","equals":"x"}}'),
          '400 cycle show_if.question', 'a two-question cycle');
SELECT pg_temp.adm('POST', :'qs', '{"key":"c","kind":"text","prompt":"?","show_if":{"question":"why","in":["a","b"]}}');
SELECT is(pg_temp.e('PATCH', :'qs' || '/' || (SELECT id FROM questions WHERE survey_id = :sv AND key = 'nps'),
                    '{"show_if":{"question":"c","equals":"a"}}'),
          '400 cycle show_if.question', 'a three-question cycle');
SELECT is(pg_temp.e('POST', :'qs', '{"key":"d","kind":"text","prompt":"?","show_if":{"question":"c"}}'),
          '400 missing_field show_if.equals', 'show_if without a condition');
SELECT is(pg_temp.e('DELETE', :'qs' || '/' || (SELECT id FROM questions WHERE survey_id = :sv AND key = 'why')),
          '409 in_use', 'deleting a question another one branches on: 409');
SELECT is(pg_temp.e('PATCH', :'qs' || '/' || (SELECT id FROM questions WHERE survey_id = :sv AND key = 'why'), '{"key":"why-not"}'),
          '400 unknown_question show_if.question', 'renaming a key others branch on');

-- choice questions need options; a live survey needs questions
SELECT is(pg_temp.e('POST', :'qs', '{"kind":"single_choice","prompt":"?"}'), '400 missing_field options', 'a choice question without options');
SELECT is(pg_temp.e('POST', '/maps/' || :map || '/surveys', '{"title":"Empty","status":"live"}'), '400 no_questions status',
          'a live survey without questions');
SELECT is((SELECT count(*) FROM surveys WHERE title = 'Empty')::int, 0, '... is not stored');

SELECT * FROM finish();
ROLLBACK;
