-- pgTAP: every write appends to audit_log with the actor (the token's name, or 'journeyctl'),
-- the action and the object; reads and refused writes append nothing; GET /audit filters and is
-- restricted to the token's site.
BEGIN;
SELECT no_plan();

SELECT (jd_site_create('Audited', '{https://au.example}', 'none-required', NULL) ->> 'id') AS site \gset
SELECT (jd_site_create('Other', '{https://o.example}', 'none-required', NULL) ->> 'id') AS other \gset
SELECT is((SELECT actor || ' ' || action || ' ' || object_type FROM audit_log WHERE object_id = :'site' AND object_type = 'site'),
          'journeyctl create site', 'jd_site_create is audited as journeyctl');
CREATE TEMP TABLE tok AS
SELECT jd_token_create('alice-laptop', 'admin', (SELECT key FROM sites WHERE id = :site), NULL, 'journeyctl') ->> 'token' AS alice,
       jd_token_create('ci-reader', 'read', NULL, NULL, 'journeyctl') ->> 'token' AS reader;
SELECT is((SELECT count(*) FROM audit_log WHERE object_type = 'token' AND action = 'create')::int, 2, 'token creation is audited');

CREATE TEMP TABLE mark AS SELECT max(id) AS id FROM audit_log;
CREATE FUNCTION pg_temp.api(m text, p text, b text DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('status', a.status, 'body', a.body::jsonb) FROM tok, jd_api(m, p, '{}', b, tok.alice) a
$$;
SELECT pg_temp.api('POST', '/maps', '{"name":"Journey"}') #>> '{body,id}' AS map \gset
SELECT pg_temp.api('PATCH', '/maps/' || :map, '{"goal":"Understand churn"}');
SELECT pg_temp.api('POST', '/maps/' || :map || '/personas', '{"name":"P"}') #>> '{body,id}' AS persona \gset
SELECT pg_temp.api('DELETE', '/maps/' || :map || '/personas/' || :persona);
SELECT pg_temp.api('POST', '/maps/' || :map || '/surveys', '{"title":"S"}') #>> '{body,id}' AS sv \gset
SELECT pg_temp.api('POST', '/surveys/' || :sv || '/questions', '{"kind":"text","prompt":"Why?"}');
SELECT pg_temp.api('POST', '/sites/' || :site || '/rules', format('{"kind":"url","match":{"pattern":"/x"},"stage":"purchase","map":%s}', :map));
SELECT pg_temp.api('PUT', '/maps/' || :map || '/document', jsonb_set(jd_map_document(:map), '{goal}', '"Changed"')::text);
SELECT pg_temp.api('POST', '/maps/' || :map || '/import', '[{"stage":"purchase","thought":"hm"}]');
-- reads and refused writes
SELECT pg_temp.api('GET', '/maps/' || :map);
SELECT pg_temp.api('GET', '/maps/' || :map || '/stages');
SELECT pg_temp.api('POST', '/maps/' || :map || '/personas', '{"name":"Bad","age_min":9,"age_max":1}');
SELECT pg_temp.api('PATCH', '/sites/' || :other, '{"name":"x"}');

SELECT is((SELECT array_agg(actor || ' ' || action || ' ' || object_type ORDER BY id) FROM audit_log WHERE id > (SELECT id FROM mark)),
          ARRAY['alice-laptop create map', 'alice-laptop update map', 'alice-laptop create persona', 'alice-laptop delete persona',
                'alice-laptop create survey', 'alice-laptop create question', 'alice-laptop create rule', 'alice-laptop apply map',
                'alice-laptop import map'],
          'each write appends one row with the token''s name; reads and refused writes append none');
SELECT ok((SELECT bool_and(site_id = :site) FROM audit_log WHERE id > (SELECT id FROM mark)), 'rows carry the site');
SELECT is((SELECT object_id FROM audit_log WHERE id > (SELECT id FROM mark) AND action = 'update'), :'map', 'rows name the object');
SELECT is((SELECT detail ->> 'goal' FROM audit_log WHERE id > (SELECT id FROM mark) AND action = 'update'), 'Understand churn',
          'rows hold what was sent');

SELECT is((SELECT status FROM jd_admin('POST', '/maps', '{}', format('{"site":%s,"name":"By CLI"}', :other), 'journeyctl')), 201, 'a journeyctl write');
SELECT is((SELECT actor FROM audit_log ORDER BY id DESC LIMIT 1), 'journeyctl', '... is audited as journeyctl');

-- GET /audit
SELECT is((SELECT (body::jsonb #>> '{items,0,action}') FROM tok, jd_api('GET', '/audit', '{"object_type":"question"}', NULL, tok.reader)),
          'create', 'GET /audit?object_type= filters');
SELECT ok((SELECT bool_and((e ->> 'site_id')::bigint = :site) FROM tok, jd_api('GET', '/audit', '{"limit":"1000"}', NULL, tok.alice) a,
                  jsonb_array_elements(a.body::jsonb -> 'items') e), 'a site-bound token sees only its site''s audit rows');
SELECT is((SELECT (body::jsonb ->> 'total')::int FROM tok, jd_api('GET', '/audit', '{"actor":"alice-laptop"}', NULL, tok.reader)), 9,
          'GET /audit?actor= filters');

SELECT * FROM finish();
ROLLBACK;
