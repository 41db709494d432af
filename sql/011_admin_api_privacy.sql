-- Privacy routes of the admin API (they need 010's jd_erase and jd_respondent_access):
--   GET  /respondents/{uuid}         right of access: everything stored about one respondent
--   POST /respondents/{uuid}/erase   erase one respondent
--   POST /erase {"email": "..."}     erase every respondent of the site with that email/subject
-- All need an admin-scope token (reading personal data too), are limited to the token's site and
-- are audited (the email itself is never written to audit_log). Which site: ?site= (id or key),
-- or "site" in the POST /erase body, or the token's site; a respondent id found in exactly one
-- allowed site needs no site at all.

-- The site to act in for a respondent id (404 when unknown, 400 when it is ambiguous).
CREATE FUNCTION jd__respondent_site(c jd_api_ctx, p_id uuid, p_site_ref text)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    sid bigint := coalesce(jd__site_ref(c, p_site_ref, 'site'), c.site_id);
    n int;
BEGIN
    SELECT count(*), min(r.site_id) INTO n, sid FROM respondents r
     WHERE r.id = p_id AND (sid IS NULL OR r.site_id = sid);
    IF n = 0 THEN
        PERFORM jd__fail(404, 'not_found', format('no respondent %s', p_id));
    ELSIF n > 1 THEN
        PERFORM jd__fail(400, 'ambiguous', 'this respondent id exists in several sites; name one with ?site=', 'site');
    END IF;
    RETURN sid;
END $$;

CREATE FUNCTION jd__uuid(p text) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN p::uuid END
$$;

-- /respondents/{uuid} (GET) and /respondents/{uuid}/erase (POST)
CREATE FUNCTION jd__h_respondent(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    rid uuid := jd__uuid(p[1]);
    sid bigint;
    res jsonb;
BEGIN
    PERFORM jd__need_admin(c);
    IF rid IS NULL THEN
        RETURN jd__error(404, 'not_found', format('"%s" is not a respondent id (a UUID)', p[1]));
    END IF;
    sid := jd__respondent_site(c, rid, q ->> 'site');
    IF m = 'GET' THEN
        res := jd_respondent_access(sid, rid);
        PERFORM jd__audit(c, 'access', 'respondent', rid::text, sid, '{}');
        RETURN jd__ok(res);
    END IF;
    res := jd_erase(sid, rid, NULL);
    PERFORM jd__audit(c, 'erase', 'respondent', rid::text, sid, res);
    RETURN jd__ok(jsonb_build_object('site_id', sid, 'respondent', rid, 'erased', res));
END $$;

-- POST /erase {"email": "...", "site": id|key}
CREATE FUNCTION jd__h_erase(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    body jsonb;
    sid bigint;
    res jsonb;
BEGIN
    PERFORM jd__need_admin(c);
    body := jd__check(jd__body_object(b), '{"email":"text","site":"ref"}');
    IF coalesce(btrim(body ->> 'email'), '') = '' THEN
        PERFORM jd__fail(400, 'missing_field', 'field "email" is required', 'email');
    END IF;
    sid := coalesce(jd__site_ref(c, coalesce(body ->> 'site', q ->> 'site'), 'site'), c.site_id);
    IF sid IS NULL THEN
        IF (SELECT count(*) FROM sites) = 1 THEN
            sid := (SELECT id FROM sites);
        ELSE
            PERFORM jd__fail(400, 'missing_field', 'name the site ("site": id or key)', 'site');
        END IF;
    END IF;
    res := jd_erase(sid, NULL, btrim(body ->> 'email'));
    PERFORM jd__audit(c, 'erase', 'respondent', NULL, sid, jsonb_build_object('by', 'email') || res);
    RETURN jd__ok(jsonb_build_object('site_id', sid, 'erased', res));
END $$;

INSERT INTO api_routes (template, methods, handler) VALUES
    ('/respondents/{id}',       '{GET}',  'jd__h_respondent'),
    ('/respondents/{id}/erase', '{POST}', 'jd__h_respondent'),
    ('/erase',                  '{POST}', 'jd__h_erase');
