-- pgTAP: admin API error statuses and shapes: 404 unknown route or id, 405 wrong method, 400 with
-- {"error":{"code","message","field"}} for bad JSON, unknown fields, wrong types and values that
-- break constraints (SQLSTATE classes 22/23), 409 for conflicts; and never 500 for any request
-- a client can send (every route x method x a set of hostile bodies and ids).
BEGIN;
SELECT no_plan();

CREATE FUNCTION pg_temp.adm(m text, p text, b text DEFAULT NULL, q jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('status', a.status, 'body', a.body::jsonb) FROM jd_admin(m, p, q, b, 'pgtap') a
$$;
CREATE FUNCTION pg_temp.status(m text, p text, b text DEFAULT NULL, q jsonb DEFAULT '{}')
RETURNS int LANGUAGE sql AS $$ SELECT (pg_temp.adm(m, p, b, q) ->> 'status')::int $$;
CREATE FUNCTION pg_temp.err(m text, p text, b text DEFAULT NULL, q jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$ SELECT pg_temp.adm(m, p, b, q) #> '{body,error}' $$;

-- Fixture: a site with a map (default stages and touchpoints), persona, obstacle, resource,
-- survey with a question, a rule and a token.
SELECT (jd_site_create('Errors', '{https://e.example}', 'none-required', 'pgtap') ->> 'id') AS site \gset
SELECT pg_temp.adm('POST', '/maps', format('{"site":%s,"name":"Checkout"}', :site)) #>> '{body,id}' AS map \gset
SELECT pg_temp.adm('POST', '/maps/' || :map || '/personas', '{"name":"Parent"}') #>> '{body,id}' AS persona \gset
SELECT pg_temp.adm('POST', '/maps/' || :map || '/obstacles', '{"name":"Price too high"}') #>> '{body,id}' AS obstacle \gset
SELECT id AS stage FROM stages WHERE map_id = :map AND slug = 'purchase' \gset
SELECT id AS touchpoint FROM touchpoints WHERE map_id = :map AND slug = 'website' \gset
SELECT pg_temp.adm('POST', '/stages/' || :stage || '/resources', '{"kind":"technology","name":"Payments"}') #>> '{body,id}' AS resource \gset
SELECT pg_temp.adm('POST', '/maps/' || :map || '/surveys', '{"title":"Pulse"}') #>> '{body,id}' AS survey \gset
SELECT pg_temp.adm('POST', '/surveys/' || :survey || '/questions',
                   '{"key":"feel","kind":"emotion","prompt":"How?","stage":"purchase","touchpoint":"website"}') #>> '{body,id}' AS question \gset
SELECT pg_temp.adm('POST', '/sites/' || :site || '/rules',
                   '{"kind":"url","match":{"pattern":"/pay"},"stage":"purchase"}') #>> '{body,id}' AS rule \gset
SELECT jd_token_create('t', 'read', NULL, NULL, 'pgtap') ->> 'id' AS token \gset

-- 404 / 405
SELECT is(pg_temp.status('GET', '/nope'), 404, 'unknown route: 404');
SELECT is(pg_temp.err('GET', '/nope') ->> 'code', 'not_found', '... code not_found');
SELECT is(pg_temp.status('GET', '/maps/999999999'), 404, 'unknown map id: 404');
SELECT is(pg_temp.status('GET', '/maps/abc'), 404, 'non-numeric id: 404');
SELECT is(pg_temp.status('GET', '/maps/99999999999999999999999'), 404, 'id beyond bigint: 404');
SELECT is(pg_temp.status('GET', '/maps/' || :map || '/stages/999999999'), 404, 'unknown child id: 404');
SELECT is(pg_temp.status('GET', '/maps/' || :map || '/personas/' || :stage), 404, 'a stage id is not a persona of the map: 404');
SELECT is(pg_temp.status('PUT', '/maps/' || :map), 405, 'PUT on /maps/{id}: 405');
SELECT is(pg_temp.err('PUT', '/maps/' || :map) ->> 'code', 'method_not_allowed', '... code method_not_allowed');
SELECT is(pg_temp.status('DELETE', '/interview-guide'), 405, 'DELETE /interview-guide: 405');
SELECT is(pg_temp.status('BREW', '/sites'), 405, 'an unknown method: 405');
SELECT is(pg_temp.status('GET', '/sites/'), 200, 'a trailing slash is ignored');
SELECT is(pg_temp.status('HEAD', '/sites'), 200, 'HEAD is served like GET');

-- 400 with code, message and field
SELECT is(pg_temp.status('POST', '/maps/' || :map || '/personas', '{"name": '), 400, 'invalid JSON: 400');
SELECT is(pg_temp.err('POST', '/maps/' || :map || '/personas', '{"name": ') ->> 'code', 'bad_json', '... code bad_json');
SELECT is(pg_temp.err('POST', '/maps/' || :map || '/personas', NULL) ->> 'code', 'missing_body', 'no body: missing_body');
SELECT is(pg_temp.err('POST', '/maps/' || :map || '/personas', '[1,2]') ->> 'code', 'bad_body', 'an array body: bad_body');
SELECT is(pg_temp.err('POST', '/maps/' || :map || '/personas', '{"nmae":"x"}'),
          '{"code":"unknown_field","message":"unknown field \"nmae\"","field":"nmae"}', 'unknown field: code, message, field');
SELECT is(pg_temp.err('POST', '/maps/' || :map || '/personas', '{"name":"x","age_min":"ten"}') ->> 'field', 'age_min',
          'wrong type names the field');
SELECT is(pg_temp.err('POST', '/maps/' || :map || '/personas', '{"name":"x","age_min":10.5}') ->> 'code', 'invalid_type',
          'a fraction where an integer belongs: invalid_type');
SELECT is(pg_temp.err('POST', '/maps/' || :map || '/personas', '{"age_min":10}') ->> 'field', 'name', 'missing name: field name');
SELECT is(pg_temp.err('POST', '/maps/' || :map || '/personas', '{"name":"x","slug":"Not A Slug"}') ->> 'field', 'slug',
          'a CHECK violation (23514) is a 400 naming the field');
SELECT is(pg_temp.status('POST', '/maps/' || :map || '/personas', format('{"name":"%s"}', repeat('x', 300))), 400,
          'a name over 200 characters: 400');
SELECT is(pg_temp.err('POST', '/maps/' || :map || '/personas', '{"name":"x","age_min":200}') ->> 'field', 'age_min', 'age 200: 400 age_min');
SELECT is(pg_temp.err('POST', '/maps/' || :map || '/personas', '{"name":"x","position":99999999999}') ->> 'field', 'position',
          'an integer beyond int4: 400 naming the field');
SELECT is(pg_temp.status('PATCH', '/maps/' || :map, '{"name":null}'), 400, 'null for a NOT NULL column: 400');
SELECT is(pg_temp.err('PATCH', '/sites/' || :site, '{"allowed_origins":["not an origin"]}') ->> 'field', 'allowed_origins',
          'a bad origin: 400 allowed_origins');
SELECT is(pg_temp.err('PATCH', '/sites/' || :site, '{"consent_mode":"maybe"}') ->> 'field', 'consent_mode', 'a bad enum: 400');
SELECT is(pg_temp.err('GET', '/maps', NULL, '{"limit":"lots"}') ->> 'field', 'limit', 'a bad limit: 400 limit');
SELECT is(pg_temp.err('POST', '/tokens', '{"name":"x","scope":"root"}') ->> 'field', 'scope', 'a bad token scope: 400 scope');
SELECT is(pg_temp.err('POST', '/tokens', '{"name":"x","expires_at":"not a date"}') ->> 'code', 'invalid_value',
          'a bad timestamp (class 22): 400 invalid_value');
SELECT is(pg_temp.err('POST', '/maps/' || :map || '/surveys', '{"title":"x","trigger":{"url":{"op":"regex","value":"(["}}}') ->> 'field',
          'trigger.url.value', 'an invalid regular expression: 400 naming the field');

-- 409
SELECT is(pg_temp.status('DELETE', '/maps/' || :map || '/stages/' || :stage), 409,
          'deleting a stage a question measures: 409');
SELECT is(pg_temp.err('PATCH', '/maps/' || :map || '/touchpoints/' || :touchpoint, '{"stages":["awareness"]}') ->> 'code', 'in_use',
          'disallowing a stage a question measures the touchpoint in: 409 in_use');
INSERT INTO answers (site_id, map_id, client_id, survey_id, question_id, emotion)
VALUES (:site, :map, gen_random_uuid(), :survey, :question, 3);
SELECT is(pg_temp.err('DELETE', '/maps/' || :map) ->> 'code', 'has_evidence', 'deleting a map with answers: 409 has_evidence');
SELECT is(pg_temp.status('PUT', '/maps/' || :map || '/document', '{"slug":"other"}'), 409, 'a document for another map: 409');
SELECT is(pg_temp.status('PATCH', '/surveys/' || :survey, '{"status":"live"}'), 404, '/surveys/{id} alone is not a route: 404');
SELECT is(pg_temp.err('PATCH', '/maps/' || :map || '/surveys/' || :survey, '{"status":"live","title":""}') ->> 'field', 'title',
          'empty title: 400 title');

-- Never 500: every route, with valid and hostile ids, every method, hostile bodies.
CREATE TEMP TABLE ids (name text, val text);
INSERT INTO ids VALUES ('site', :'site'), ('map', :'map'), ('stage', :'stage'), ('survey', :'survey'), ('token', :'token'),
    ('rid_sites', :'rule'), ('rid_stages', :'resource'), ('pid', :'persona'), ('sid', :'stage'), ('tid', :'touchpoint'),
    ('oid', :'obstacle'), ('svid', :'survey'), ('qid', :'question'), ('respondent', '00000000-0000-4000-8000-000000000001');
CREATE TEMP TABLE bodies (b text);
INSERT INTO bodies VALUES (NULL), (''), ('null'), ('[]'), ('{'), ('"x"'), ('42'), ('{}'), ('{"name":123}'),
    ('{"name":"","slug":"-"}'), ('{"name":"a\u0000b"}'), (repeat('[', 5000) || repeat(']', 5000)),
    ('{"name":"Z","position":-5,"age_min":-1,"age_max":1e400}'), ('{"stages":[null,{},[]],"name":"S2"}'),
    ('{"kind":"screener","match":{"question":"feel","survey":"pulse","min":9,"max":1},"persona":"parent"}'),
    ('{"kind":"nps","prompt":"p","show_if":{"question":"feel","in":[]}}'), ('{"title":"T","trigger":{"percent":"x"}}'),
    ('{"site":{"a":1},"name":"M"}'), ('{"email":5}'), ('{"rows":"x"}'), ('[{"stage":1e500}]'),
    ('{"name":"' || repeat('ä', 3000) || '"}'), ('{"options":[{"value":{}}],"kind":"single_choice","prompt":"x"}');
CREATE TEMP TABLE calls AS
SELECT r.template, m.method,
       replace(replace(replace(replace(replace(replace(replace(replace(replace(r.template,
           '/sites/{id}', '/sites/' || v.site), '/maps/{id}', '/maps/' || v.map), '/stages/{id}', '/stages/' || v.stage),
           '/surveys/{id}', '/surveys/' || v.survey), '/tokens/{id}', '/tokens/' || v.token),
           '/respondents/{id}', '/respondents/' || v.respondent),
           '{rid}', CASE WHEN r.template LIKE '/sites/%' THEN v.rid_sites ELSE v.rid_stages END),
           '{pid}', v.pid), '{sid}', v.sid) AS path, v.variant
  FROM api_routes r
  CROSS JOIN (VALUES ('GET', 1), ('POST', 2), ('PATCH', 3), ('PUT', 4), ('DELETE', 5)) AS m(method, ord)
  CROSS JOIN (SELECT 'valid' AS variant, max(val) FILTER (WHERE name = 'site') AS site, max(val) FILTER (WHERE name = 'map') AS map,
                     max(val) FILTER (WHERE name = 'stage') AS stage, max(val) FILTER (WHERE name = 'survey') AS survey,
                     max(val) FILTER (WHERE name = 'token') AS token, max(val) FILTER (WHERE name = 'respondent') AS respondent,
                     max(val) FILTER (WHERE name = 'rid_sites') AS rid_sites, max(val) FILTER (WHERE name = 'rid_stages') AS rid_stages,
                     max(val) FILTER (WHERE name = 'pid') AS pid, max(val) FILTER (WHERE name = 'sid') AS sid FROM ids
              UNION ALL SELECT 'hostile', '-1', '1e9', '%00', '99999999999999999999', 'x', 'zz', '0', '-0', '1.5', ' ') v;
UPDATE calls SET path = replace(replace(replace(replace(path, '{tid}', (SELECT val FROM ids WHERE name = 'tid')),
                    '{oid}', (SELECT val FROM ids WHERE name = 'oid')), '{svid}', (SELECT val FROM ids WHERE name = 'svid')),
                    '{qid}', (SELECT val FROM ids WHERE name = 'qid'));
CREATE TEMP TABLE results AS
SELECT c.method, c.path, b.b, a.status, a.body
  FROM calls c
  CROSS JOIN LATERAL (SELECT * FROM bodies WHERE c.method NOT IN ('GET', 'DELETE') OR bodies.b IS NULL) b
  CROSS JOIN LATERAL jd_admin(c.method, c.path, '{"limit":"2","force":"maybe"}', b.b, 'fuzz') a
 ORDER BY c.variant DESC, CASE c.method WHEN 'DELETE' THEN 2 ELSE 1 END;
SELECT cmp_ok((SELECT count(*) FROM results)::int, '>', 1000, 'the fuzz pass made over a thousand requests');
SELECT is((SELECT count(*) FROM results WHERE status >= 500)::int, 0, 'no request answered 500');
SELECT is((SELECT string_agg(format('%s %s %s -> %s %s', method, path, left(b, 60), status, left(body, 200)), E'\n')
             FROM (SELECT * FROM results WHERE status >= 500 LIMIT 5) x), NULL, '... (the first few, if any)');
SELECT is((SELECT count(*) FROM results WHERE status >= 400 AND NOT (body::jsonb -> 'error' ?& ARRAY['code', 'message', 'field']))::int,
          0, 'every error has code, message and field');

SELECT diag('fuzz requests: ' || (SELECT count(*) FROM results) || ', statuses: ' || (SELECT string_agg(s, ' ') FROM (SELECT status || 'x' || count(*) AS s FROM results GROUP BY status ORDER BY status) x));
SELECT * FROM finish();
ROLLBACK;
