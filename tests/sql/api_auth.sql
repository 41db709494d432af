-- pgTAP: admin API authentication and authorisation (jd_api): 401 without, with an unknown,
-- expired or revoked token; 403 for read-scope writes, for another site's objects and for
-- read-scope /tokens; a site-bound token lists only its site; tokens are stored hashed only.
BEGIN;
SELECT no_plan();

CREATE FUNCTION pg_temp.api(m text, p text, tok text, b text DEFAULT NULL, q jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('status', a.status, 'type', a.content_type, 'body', a.body::jsonb)
      FROM jd_api(m, p, q, b, tok) a
$$;

SELECT jd_site_create('Site A', '{https://a.example}', 'none-required', 'pgtap') AS a \gset site_a_
SELECT jd_site_create('Site B', '{https://b.example}', 'none-required', 'pgtap') AS b \gset site_b_
CREATE TEMP TABLE ids AS
SELECT (SELECT id FROM sites WHERE name = 'Site A') AS a, (SELECT id FROM sites WHERE name = 'Site B') AS b;
CREATE TEMP TABLE tok AS
SELECT jd_token_create('all-admin', 'admin', NULL, NULL, 'pgtap') ->> 'token' AS admin,
       jd_token_create('all-read', 'read', NULL, NULL, 'pgtap') ->> 'token' AS reader,
       jd_token_create('a-admin', 'admin', (SELECT key FROM sites WHERE name = 'Site A'), NULL, 'pgtap') ->> 'token' AS a_admin,
       jd_token_create('gone', 'admin', NULL, NULL, 'pgtap') AS revoked,
       jd_token_create('old', 'admin', NULL, 1, 'pgtap') AS expired;
SELECT jd_token_revoke((revoked ->> 'id')::bigint, 'pgtap') FROM tok;
UPDATE admin_tokens SET expires_at = now() - interval '1 minute' WHERE name = 'old';
-- maps in both sites
SELECT (pg_temp.api('POST', '/maps', admin, format('{"site":%s,"name":"Map A"}', (SELECT a FROM ids))) #>> '{body,id}') AS map_a
  FROM tok \gset
SELECT (pg_temp.api('POST', '/maps', admin, format('{"site":%s,"name":"Map B"}', (SELECT b FROM ids))) #>> '{body,id}') AS map_b
  FROM tok \gset

-- 401
SELECT is((pg_temp.api('GET', '/sites', NULL) ->> 'status')::int, 401, 'no token: 401');
SELECT is(pg_temp.api('GET', '/sites', NULL) #>> '{body,error,code}', 'unauthorized', 'no token: error code unauthorized');
SELECT is((pg_temp.api('GET', '/sites', '') ->> 'status')::int, 401, 'empty token: 401');
SELECT is((pg_temp.api('GET', '/sites', 'jd_not-a-real-token') ->> 'status')::int, 401, 'unknown token: 401');
SELECT is((pg_temp.api('GET', '/sites', revoked ->> 'token') ->> 'status')::int, 401, 'revoked token: 401') FROM tok;
SELECT is((pg_temp.api('GET', '/sites', expired ->> 'token') ->> 'status')::int, 401, 'expired token: 401') FROM tok;
SELECT is((pg_temp.api('GET', '/nowhere', NULL) ->> 'status')::int, 401, 'authentication comes before routing');
SELECT is(pg_temp.api('GET', '/sites', NULL) ->> 'type', 'application/json', 'errors are JSON');

-- 200 and last_used_at
SELECT is((SELECT last_used_at FROM admin_tokens WHERE name = 'all-read'), NULL, 'a fresh token was never used');
SELECT is((pg_temp.api('GET', '/sites', reader) ->> 'status')::int, 200, 'read token can list sites') FROM tok;
SELECT isnt((SELECT last_used_at FROM admin_tokens WHERE name = 'all-read'), NULL, 'using a token sets last_used_at');

-- 403: read scope writes
SELECT is((pg_temp.api('POST', '/maps', reader, format('{"site":%s,"name":"Nope"}', (SELECT a FROM ids))) ->> 'status')::int,
          403, 'read token POST: 403') FROM tok;
SELECT is((pg_temp.api('PATCH', '/maps/' || :map_a, reader, '{"goal":"x"}') ->> 'status')::int, 403, 'read token PATCH: 403') FROM tok;
SELECT is((pg_temp.api('DELETE', '/maps/' || :map_a, reader) ->> 'status')::int, 403, 'read token DELETE: 403') FROM tok;
SELECT is(pg_temp.api('DELETE', '/maps/' || :map_a, reader) #>> '{body,error,code}', 'forbidden', 'read token: code forbidden') FROM tok;
SELECT is((SELECT count(*) FROM maps WHERE name = 'Nope')::int, 0, 'a refused write stores nothing');
SELECT is((pg_temp.api('GET', '/tokens', reader) ->> 'status')::int, 403, 'read token cannot list tokens') FROM tok;

-- 403: another site's objects; lists restricted
SELECT is((pg_temp.api('GET', '/maps/' || :map_b, a_admin) ->> 'status')::int, 403, 'site-A token GET site-B map: 403') FROM tok;
SELECT is((pg_temp.api('PATCH', '/maps/' || :map_b, a_admin, '{"goal":"x"}') ->> 'status')::int, 403, 'site-A token PATCH site-B map: 403') FROM tok;
SELECT is((pg_temp.api('GET', '/maps/' || :map_b || '/stages', a_admin) ->> 'status')::int, 403, 'site-A token lists site-B stages: 403') FROM tok;
SELECT is((pg_temp.api('GET', '/sites/' || (SELECT b FROM ids), a_admin) ->> 'status')::int, 403, 'site-A token GET site B: 403') FROM tok;
SELECT is((pg_temp.api('GET', '/maps/' || :map_a, a_admin) ->> 'status')::int, 200, 'site-A token GET its own map: 200') FROM tok;
SELECT is((pg_temp.api('GET', '/sites', a_admin) #>> '{body,total}')::int, 1, 'site-A token sees one site') FROM tok;
SELECT is((pg_temp.api('GET', '/sites', a_admin) #>> '{body,items,0,id}')::bigint, (SELECT a FROM ids), '... site A') FROM tok;
SELECT is((SELECT count(*) FROM jsonb_array_elements(pg_temp.api('GET', '/maps', a_admin) #> '{body,items}') e
            WHERE (e ->> 'site_id')::bigint <> (SELECT a FROM ids))::int, 0, 'site-A token lists only site-A maps') FROM tok;
SELECT is((pg_temp.api('GET', '/maps', a_admin, NULL, jsonb_build_object('site', (SELECT b FROM ids)::text)) ->> 'status')::int,
          403, 'site-A token asking for site-B maps: 403') FROM tok;
SELECT is((pg_temp.api('POST', '/maps', a_admin, format('{"site":%s,"name":"Sneaky"}', (SELECT b FROM ids))) ->> 'status')::int,
          403, 'site-A token creating a map in site B: 403') FROM tok;
SELECT is((pg_temp.api('POST', '/sites', a_admin, '{"name":"New"}') ->> 'status')::int, 403, 'site-bound token cannot create sites') FROM tok;
SELECT is((pg_temp.api('POST', '/tokens', a_admin, '{"name":"wide","scope":"admin","site":null}') #>> '{body,site_id}')::bigint,
          (SELECT a FROM ids), 'a site-bound admin creates tokens for its own site only') FROM tok;

-- tokens are stored hashed, never raw, and never shown again
SELECT is((SELECT count(*) FROM admin_tokens t, tok WHERE t.token_hash = sha256(convert_to(tok.admin, 'UTF8')))::int, 1,
          'the stored hash is sha256(token)');
SELECT ok(NOT EXISTS (SELECT 1 FROM admin_tokens t, tok WHERE position(tok.admin IN to_jsonb(t)::text) > 0),
          'no column holds the raw token');
SELECT ok(NOT EXISTS (SELECT 1 FROM audit_log l, tok WHERE position(tok.admin IN l::text) > 0), 'audit_log never holds a raw token');
SELECT ok(position('token_hash' IN pg_temp.api('GET', '/tokens', admin) ->> 'body') = 0
          AND pg_temp.api('GET', '/tokens', admin) #> '{body,items,0}' ? 'name'
          AND NOT pg_temp.api('GET', '/tokens', admin) #> '{body,items,0}' ? 'token', 'token lists show no hash and no token') FROM tok;
SELECT ok((pg_temp.api('POST', '/tokens', admin, '{"name":"fresh","scope":"read","expires_days":7}') #>> '{body,token}') ~ '^jd_[A-Za-z0-9_-]{43}$',
          'POST /tokens returns a raw token (32 random bytes, base64url) once') FROM tok;
SELECT is((pg_temp.api('DELETE', '/tokens/' || (SELECT id FROM admin_tokens WHERE name = 'fresh'), admin) #>> '{body,active}')::boolean,
          false, 'DELETE /tokens/{id} revokes') FROM tok;

SELECT * FROM finish();
ROLLBACK;
