-- pgTAP: admin API model routes: map defaults (five stages with meanings, eleven touchpoints
-- allowed everywhere), pagination, stage order and reorder, touchpoints' allowed stages,
-- resources, rules, the interview guide and copying it into a survey.
BEGIN;
SELECT no_plan();

CREATE FUNCTION pg_temp.adm(m text, p text, b text DEFAULT NULL, q jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('status', a.status, 'body', a.body::jsonb) FROM jd_admin(m, p, q, b, 'pgtap') a
$$;

SELECT (jd_site_create('Model', '{https://m.example}', 'opt-in', 'pgtap') ->> 'id') AS site \gset
SELECT pg_temp.adm('POST', '/maps', format('{"site":%s,"name":"New sign-up experience","goal":"Sign up","customer_group":"Freelancers"}', :site)) AS r \gset
SELECT is((:'r'::jsonb ->> 'status')::int, 201, 'POST /maps: 201');
SELECT (:'r'::jsonb #>> '{body,id}') AS map \gset
SELECT is(:'r'::jsonb #>> '{body,slug}', 'new-sign-up-experience', 'the slug is derived from the name');

-- defaults
SELECT is((SELECT array_agg(name ORDER BY position) FROM stages WHERE map_id = :map),
          ARRAY['Awareness', 'Interest', 'Consideration', 'Purchase', 'Advocacy'], 'default stages, in order');
SELECT ok((SELECT bool_and(meaning <> '') FROM stages WHERE map_id = :map), 'each default stage has a one-line meaning');
SELECT is((SELECT array_agg(name ORDER BY position) FROM touchpoints WHERE map_id = :map),
          ARRAY['Marketing content', 'Paid ads', 'Social media', 'Third-party reviews', 'Website', 'Email marketing',
                'Phone calls', 'Live chat', 'In-person', 'Product onboarding', 'Customer self-service'],
          'default touchpoints');
SELECT is((SELECT count(*) FROM touchpoint_stages ts JOIN touchpoints t ON t.id = ts.touchpoint_id WHERE t.map_id = :map)::int,
          55, 'every default touchpoint is allowed in every stage');
SELECT is(jsonb_array_length(pg_temp.adm('GET', '/maps/' || :map || '/touchpoints/' ||
              (SELECT id FROM touchpoints WHERE map_id = :map AND slug = 'website')) #> '{body,stages}'), 5,
          'a touchpoint shows its allowed stages');
SELECT pg_temp.adm('POST', '/maps', format('{"site":%s,"name":"Custom","stages":[{"name":"Discover"},{"name":"Use","meaning":"Daily use"}],
                                             "touchpoints":[{"name":"App","stages":["use"]}]}', :site)) #>> '{body,id}' AS custom \gset
SELECT is((SELECT array_agg(slug ORDER BY position) FROM stages WHERE map_id = :custom), ARRAY['discover', 'use'],
          'stages given at creation replace the defaults');
SELECT is((SELECT array_agg(slug) FROM touchpoints WHERE map_id = :custom), ARRAY['app'], 'touchpoints given replace the defaults');
SELECT is(pg_temp.adm('GET', '/maps/' || :custom || '/touchpoints') #> '{body,items,0,stages}', '["use"]', '... with their stages');
SELECT pg_temp.adm('POST', '/maps', format('{"site":%s,"name":"Half","stages":[{"name":"Only"}]}', :site)) #>> '{body,id}' AS half \gset
SELECT is((SELECT count(*) FROM touchpoint_stages ts JOIN stages s ON s.id = ts.stage_id WHERE s.map_id = :half)::int, 11,
          'custom stages with default touchpoints: every touchpoint allowed in them');

-- pagination
SELECT is((pg_temp.adm('GET', '/maps/' || :map || '/touchpoints', NULL, '{"limit":"4","offset":"8"}') -> 'body') - 'items',
          '{"total":11,"limit":4,"offset":8}', 'limit/offset: total, limit and offset');
SELECT is(jsonb_array_length(pg_temp.adm('GET', '/maps/' || :map || '/touchpoints', NULL, '{"limit":"4","offset":"8"}') #> '{body,items}'),
          3, 'the last page holds the rest');
SELECT is(pg_temp.adm('GET', '/maps/' || :map || '/touchpoints', NULL, '{"limit":"4","offset":"8"}') #>> '{body,items,0,slug}',
          'in-person', 'pages follow position order');
SELECT is(pg_temp.adm('GET', '/maps/' || :map || '/stages') #>> '{body,limit}', '50', 'default limit 50');
SELECT is((pg_temp.adm('GET', '/maps/' || :map || '/stages', NULL, '{"limit":"0"}') ->> 'status')::int, 400, 'limit 0: 400');
SELECT is((pg_temp.adm('GET', '/maps/' || :map || '/stages', NULL, '{"limit":"1001"}') ->> 'status')::int, 400, 'limit 1001: 400');
SELECT is((pg_temp.adm('GET', '/maps/' || :map || '/stages', NULL, '{"offset":"-1"}') ->> 'status')::int, 400, 'offset -1: 400');
SELECT is(pg_temp.adm('GET', '/maps/' || :map || '/stages', NULL, '{"offset":"100"}') #> '{body,items}', '[]', 'past the end: empty page');

-- stage order: insert at a position, reorder with PATCH position
SELECT pg_temp.adm('POST', '/maps/' || :map || '/stages', '{"name":"Onboarding","meaning":"First week","position":5}') #>> '{body,id}' AS onb \gset
SELECT is((SELECT array_agg(slug ORDER BY position) FROM stages WHERE map_id = :map),
          ARRAY['awareness', 'interest', 'consideration', 'purchase', 'onboarding', 'advocacy'], 'POST with position inserts there');
SELECT is(pg_temp.adm('PATCH', '/maps/' || :map || '/stages/' || :onb, '{"position":1}') #>> '{body,position}', '1', 'PATCH position');
SELECT is((SELECT array_agg(slug ORDER BY position) FROM stages WHERE map_id = :map),
          ARRAY['onboarding', 'awareness', 'interest', 'consideration', 'purchase', 'advocacy'], '... moves the stage, others shift');
SELECT is((SELECT array_agg(position ORDER BY position) FROM stages WHERE map_id = :map), ARRAY[1, 2, 3, 4, 5, 6],
          'positions stay 1..n');
SELECT is(pg_temp.adm('GET', '/maps/' || :map || '/stages') #>> '{body,items,0,slug}', 'onboarding', 'lists are ordered by position');
SELECT pg_temp.adm('PATCH', '/maps/' || :map || '/stages/' || :onb, '{"position":99}');
SELECT is((SELECT slug FROM stages WHERE map_id = :map ORDER BY position DESC LIMIT 1), 'onboarding', 'a position past the end moves it last');
SELECT is(pg_temp.adm('DELETE', '/maps/' || :map || '/stages/' || :onb) #>> '{body,deleted}', 'true', 'DELETE a stage');
SELECT is((SELECT array_agg(position ORDER BY position) FROM stages WHERE map_id = :map), ARRAY[1, 2, 3, 4, 5], '... positions close up');

-- touchpoints: allowed stages are editable
SELECT id AS web FROM touchpoints WHERE map_id = :map AND slug = 'website' \gset
SELECT is(pg_temp.adm('PATCH', '/maps/' || :map || '/touchpoints/' || :web, '{"stages":["purchase","interest"]}') #> '{body,stages}',
          '["interest","purchase"]', 'PATCH stages replaces the allowed stages (shown in stage order)');
SELECT is(pg_temp.adm('POST', '/maps/' || :map || '/touchpoints', '{"name":"Kiosk","channel":"in-store","stages":["purchase"]}') #> '{body,stages}',
          '["purchase"]', 'POST a touchpoint with its stages');

-- personas, obstacles, resources
SELECT is((pg_temp.adm('POST', '/maps/' || :map || '/personas', '{"name":"Freelance designer","age_min":25,"age_max":40,
     "job_role":"Designer","family_status":"Single","professional_goals":"More clients","personal_interests":"Climbing",
     "description":"Works alone","data_sources":"12 interviews, CRM export"}') ->> 'status')::int, 201, 'POST a persona with every field');
SELECT is(pg_temp.adm('GET', '/maps/' || :map || '/personas') #>> '{body,items,0,data_sources}', '12 interviews, CRM export', '... stored');
SELECT is((pg_temp.adm('POST', '/maps/' || :map || '/obstacles', '{"name":"Checkout too complex"}') ->> 'status')::int, 201, 'POST an obstacle');
SELECT id AS purchase FROM stages WHERE map_id = :map AND slug = 'purchase' \gset
SELECT pg_temp.adm('POST', '/stages/' || :purchase || '/resources', '{"kind":"department","name":"Support","owner":"Ana","notes":"9-5"}') AS res \gset
SELECT is((:'res'::jsonb ->> 'status')::int, 201, 'POST a resource to a stage');
SELECT is(pg_temp.adm('PATCH', '/stages/' || :purchase || '/resources/' || (:'res'::jsonb #>> '{body,id}'), '{"owner":"Bo"}') #>> '{body,owner}',
          'Bo', 'PATCH a resource');
SELECT is((pg_temp.adm('POST', '/stages/' || :purchase || '/resources', '{"kind":"robot","name":"R2"}') ->> 'status')::int, 400,
          'a resource kind outside department/technology/process: 400');
SELECT is((pg_temp.adm('GET', '/stages/' || :purchase || '/resources') #>> '{body,total}')::int, 1, 'GET the stage''s resources');

-- map PATCH and GET
SELECT is(pg_temp.adm('PATCH', '/maps/' || :map, '{"scope":"From ad to first project"}') #>> '{body,scope}', 'From ad to first project', 'PATCH a map');
SELECT is(pg_temp.adm('GET', '/maps/' || :map) #>> '{body,customer_group}', 'Freelancers', 'GET a map');
SELECT is((pg_temp.adm('GET', '/maps', NULL, jsonb_build_object('site', :'site')) #>> '{body,total}')::int, 3, 'GET /maps?site=');

-- surveys and rules
SELECT pg_temp.adm('POST', '/maps/' || :map || '/surveys', '{"title":"Sign-up pulse","trigger":{"url":{"op":"contains","value":"/signup"},"delay_ms":500,"percent":50,"cooldown_days":30}}') #>> '{body,id}' AS sv \gset
SELECT is((SELECT status FROM surveys WHERE id = :sv), 'draft', 'a new survey is a draft');
SELECT is(pg_temp.adm('POST', '/sites/' || :site || '/rules', format('{"kind":"utm","match":{"source":"google","medium":"cpc"},"map":%s,"touchpoint":"paid-ads"}', :map)) #>> '{body,touchpoint}',
          'paid-ads', 'a utm rule sets a touchpoint');
SELECT is(pg_temp.adm('POST', '/sites/' || :site || '/rules', format('{"kind":"persona_attribute","match":{"attribute":"role","value":"designer"},"map":%s,"persona":"freelance-designer"}', :map)) #>> '{body,persona}',
          'freelance-designer', 'a persona rule assigns a persona');
SELECT is((pg_temp.adm('GET', '/sites/' || :site || '/rules') #>> '{body,total}')::int, 2, 'GET the site''s rules');

-- interview guide
SELECT is((pg_temp.adm('GET', '/interview-guide') #>> '{body,total}')::int, 6, 'the interview guide has six questions');
SELECT is((SELECT array_agg(DISTINCT e ->> 'lane' ORDER BY e ->> 'lane') FROM jsonb_array_elements(pg_temp.adm('GET', '/interview-guide') #> '{body,items}') e),
          ARRAY['actions', 'emotions', 'obstacles', 'thoughts'], '... tied to the four lanes');
SELECT is((pg_temp.adm('POST', '/surveys/' || :sv || '/interview-guide', '{"stage":"purchase","touchpoint":"website"}') ->> 'status')::int, 201,
          'copy the guide into a survey');
SELECT is((SELECT count(*) FROM questions WHERE survey_id = :sv AND stage_id = :purchase)::int, 6, '... six questions tied to the cell');
SELECT is((pg_temp.adm('POST', '/surveys/' || :sv || '/interview-guide', NULL) #>> '{body,error,code}'), 'duplicate',
          'copying it twice: 400 duplicate');
SELECT is(pg_temp.adm('PATCH', '/maps/' || :map || '/surveys/' || :sv, '{"status":"live"}') #>> '{body,status}', 'live',
          'a survey with questions goes live');

SELECT * FROM finish();
ROLLBACK;
