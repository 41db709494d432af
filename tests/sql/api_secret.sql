-- pgTAP: sites.identity_secret is accepted on create and update and never returned: not by
-- GET/list/POST/PATCH of sites, not in the audit log, not in any other route's answer; instead
-- "identity_secret_set" says whether one is set.
BEGIN;
SELECT no_plan();

CREATE TEMP TABLE secret AS SELECT 'top-secret-value-0123456789' AS s;
CREATE TEMP TABLE tok AS SELECT jd_token_create('reader', 'read', NULL, NULL, 'pgtap') ->> 'token' AS reader,
                                jd_token_create('admin', 'admin', NULL, NULL, 'pgtap') ->> 'token' AS admin;
CREATE TEMP TABLE seen (route text, body text);
CREATE FUNCTION pg_temp.call(m text, p text, b text DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
    WITH r AS (SELECT a.* FROM tok, jd_api(m, p, '{}', b, tok.admin) a),
         s AS (INSERT INTO seen SELECT m || ' ' || p, r.body FROM r)
    SELECT jsonb_build_object('status', r.status, 'body', r.body::jsonb) FROM r
$$;

SELECT pg_temp.call('POST', '/sites', format('{"name":"Signed","identity_secret":"%s"}', (SELECT s FROM secret))) AS created \gset
SELECT is((:'created'::jsonb ->> 'status')::int, 201, 'POST /sites with an identity_secret: 201');
SELECT (:'created'::jsonb #>> '{body,id}') AS site \gset
SELECT is(:'created'::jsonb #>> '{body,identity_secret_set}', 'true', '... answers identity_secret_set: true');
SELECT ok(NOT :'created'::jsonb -> 'body' ? 'identity_secret', '... and no identity_secret');
SELECT is((SELECT to_jsonb(s) ->> 'identity_secret' FROM sites s WHERE id = :site), (SELECT s FROM secret), 'the secret is stored');

SELECT is(pg_temp.call('GET', '/sites/' || :site) #>> '{body,identity_secret_set}', 'true', 'GET /sites/{id}: identity_secret_set');
SELECT ok(NOT pg_temp.call('GET', '/sites/' || :site) -> 'body' ? 'identity_secret', 'GET /sites/{id}: no identity_secret');
SELECT ok(NOT EXISTS (SELECT 1 FROM jsonb_array_elements(pg_temp.call('GET', '/sites') #> '{body,items}') e WHERE e ? 'identity_secret'),
          'GET /sites: no identity_secret');
SELECT is(pg_temp.call('PATCH', '/sites/' || :site, '{"identity_secret":"another-secret-abcdefgh"}') #>> '{body,identity_secret_set}', 'true',
          'PATCH a new secret');
SELECT is((SELECT to_jsonb(s) ->> 'identity_secret' FROM sites s WHERE id = :site), 'another-secret-abcdefgh', '... stored');
SELECT is(pg_temp.call('PATCH', '/sites/' || :site, '{"name":"Renamed"}') #>> '{body,identity_secret_set}', 'true',
          'a PATCH without the secret keeps it');
SELECT is(pg_temp.call('PATCH', '/sites/' || :site, '{"identity_secret":null}') #>> '{body,identity_secret_set}', 'false',
          'PATCH null clears it');
SELECT is(pg_temp.call('PATCH', '/sites/' || :site, '{"identity_secret":"short"}') #>> '{body,error,field}', 'identity_secret',
          'a short secret: 400 identity_secret');
SELECT pg_temp.call('PATCH', '/sites/' || :site, format('{"identity_secret":"%s"}', (SELECT s FROM secret)));

-- everything else a client can read
SELECT pg_temp.call('POST', '/maps', format('{"site":%s,"name":"M"}', :site));
SELECT pg_temp.call('GET', '/maps');
SELECT pg_temp.call('GET', '/maps/' || (SELECT id FROM maps WHERE site_id = :site));
SELECT pg_temp.call('GET', '/maps/' || (SELECT id FROM maps WHERE site_id = :site) || '/document');
SELECT pg_temp.call('GET', '/audit');
SELECT pg_temp.call('GET', '/tokens');
SELECT ok(NOT EXISTS (SELECT 1 FROM seen, secret WHERE position(secret.s IN seen.body) > 0 OR position('another-secret' IN seen.body) > 0),
          'no API answer contains the secret');
SELECT ok(NOT EXISTS (SELECT 1 FROM seen WHERE seen.body::jsonb::text ~ '"identity_secret":'), 'no API answer has an identity_secret field');
SELECT ok(NOT EXISTS (SELECT 1 FROM audit_log l, secret WHERE position(secret.s IN l::text) > 0 OR position('another-secret' IN l::text) > 0),
          'the audit log never holds the secret');
SELECT is((SELECT detail ->> 'identity_secret_change' FROM audit_log WHERE object_type = 'site' AND action = 'create' AND object_id = :'site'),
          'set', '... it records that one was set');
SELECT ok(position((SELECT s FROM secret) IN jd_map_document((SELECT id FROM maps WHERE site_id = :site))::text) = 0,
          'jd_map_document has no secret');

SELECT * FROM finish();
ROLLBACK;
