-- pgTAP: privacy routes (migration 011): GET /respondents/{uuid} exports everything stored,
-- POST /respondents/{uuid}/erase and POST /erase {"email"} call jd_erase and report counts; both
-- need an admin-scope token, are restricted to the token's site and are audited.
BEGIN;
SELECT no_plan();

SELECT (jd_site_create('Private', '{https://p.example}', 'none-required', 'pgtap') ->> 'id') AS site \gset
SELECT (jd_site_create('Elsewhere', '{https://e.example}', 'none-required', 'pgtap') ->> 'id') AS other \gset
CREATE TEMP TABLE tok AS
SELECT jd_token_create('dpo', 'admin', NULL, NULL, 'pgtap') ->> 'token' AS admin,
       jd_token_create('analyst', 'read', NULL, NULL, 'pgtap') ->> 'token' AS reader,
       jd_token_create('other-site', 'admin', (SELECT key FROM sites WHERE id = :other), NULL, 'pgtap') ->> 'token' AS other;
SELECT (jd_apply_map(jsonb_build_object('site', (SELECT key FROM sites WHERE id = :site), 'name', 'M'), 'pgtap') ->> 'map_id') AS map \gset
INSERT INTO respondents (site_id, id, email) VALUES
    (:site, '00000000-0000-4000-8000-0000000000a1', 'ann@example.org'),
    (:site, '00000000-0000-4000-8000-0000000000a2', 'Bob@Example.org');
INSERT INTO sessions (id, site_id, respondent_id, consent_mode)
VALUES ('00000000-0000-4000-8000-0000000000b1', :site, '00000000-0000-4000-8000-0000000000a1', 'none-required');
INSERT INTO answers (site_id, map_id, client_id, respondent_id, session_id, thought) VALUES
    (:site, :map, gen_random_uuid(), '00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-0000000000b1', 'mine'),
    (:site, :map, gen_random_uuid(), '00000000-0000-4000-8000-0000000000a2', NULL, 'bob''s');

CREATE FUNCTION pg_temp.api(who text, m text, p text, b text DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('status', a.status, 'body', a.body::jsonb)
      FROM tok, jd_api(m, p, '{}', b, CASE who WHEN 'admin' THEN tok.admin WHEN 'reader' THEN tok.reader ELSE tok.other END) a
$$;

SELECT is((pg_temp.api('admin', 'GET', '/respondents/00000000-0000-4000-8000-0000000000a1') ->> 'status')::int, 200, 'GET /respondents/{uuid}: 200');
SELECT is(pg_temp.api('admin', 'GET', '/respondents/00000000-0000-4000-8000-0000000000a1') #>> '{body,answers,0,thought}', 'mine',
          '... exports the respondent''s answers');
SELECT is(jsonb_array_length(pg_temp.api('admin', 'GET', '/respondents/00000000-0000-4000-8000-0000000000a1') #> '{body,sessions}'), 1,
          '... and sessions');
SELECT is((pg_temp.api('reader', 'GET', '/respondents/00000000-0000-4000-8000-0000000000a1') ->> 'status')::int, 403,
          'a read-scope token cannot export personal data');
SELECT is((pg_temp.api('other', 'GET', '/respondents/00000000-0000-4000-8000-0000000000a1') ->> 'status')::int, 404,
          'another site''s token does not find the respondent');
SELECT is((pg_temp.api('admin', 'GET', '/respondents/not-a-uuid') ->> 'status')::int, 404, 'not a uuid: 404');
SELECT is((pg_temp.api('admin', 'GET', '/respondents/00000000-0000-4000-8000-0000000000ff') ->> 'status')::int, 404, 'unknown respondent: 404');

SELECT is((pg_temp.api('other', 'POST', '/respondents/00000000-0000-4000-8000-0000000000a1/erase') ->> 'status')::int, 404,
          'another site''s token cannot erase');
SELECT is((pg_temp.api('reader', 'POST', '/respondents/00000000-0000-4000-8000-0000000000a1/erase') ->> 'status')::int, 403,
          'a read-scope token cannot erase');
SELECT is(pg_temp.api('admin', 'POST', '/respondents/00000000-0000-4000-8000-0000000000a1/erase') #> '{body,erased}',
          '{"respondents":1,"answers":1,"touch_events":0,"sessions":1}', 'erase by id reports counts');
SELECT is((SELECT count(*) FROM answers WHERE respondent_id = '00000000-0000-4000-8000-0000000000a1')::int, 0, '... the answers are gone');
SELECT is(pg_temp.api('admin', 'POST', '/respondents/00000000-0000-4000-8000-0000000000a1/erase') #> '{body,erased,answers}', '0',
          'erasing again is a no-op');

SELECT is((pg_temp.api('admin', 'POST', '/erase', '{"site":"' || (SELECT key FROM sites WHERE id = :site) || '"}') ->> 'status')::int, 400,
          'POST /erase without an email: 400');
SELECT is((pg_temp.api('other', 'POST', '/erase', format('{"email":"bob@example.org","site":%s}', :site)) ->> 'status')::int, 403,
          'POST /erase in another site: 403');
SELECT is(pg_temp.api('admin', 'POST', '/erase', format('{"email":"bob@example.org","site":%s}', :site)) #> '{body,erased}',
          '{"respondents":1,"answers":1,"touch_events":0,"sessions":0}', 'erase by email (case-insensitive) reports counts');
SELECT is((SELECT count(*) FROM respondents WHERE site_id = :site AND erased_at IS NOT NULL)::int, 2, 'both respondents are tombstoned');

SELECT is((SELECT array_agg(actor || ' ' || action ORDER BY id) FROM audit_log WHERE object_type = 'respondent'),
          ARRAY['dpo access', 'dpo access', 'dpo access', 'dpo erase', 'dpo erase', 'dpo erase'], 'access and erasure are audited');
SELECT ok(NOT EXISTS (SELECT 1 FROM audit_log WHERE detail::text ILIKE '%bob@example%'), 'the audit log does not keep the email');

SELECT * FROM finish();
ROLLBACK;
