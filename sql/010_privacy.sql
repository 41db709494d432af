-- Privacy: signed visitor identities, erasure, access export and retention purge.
-- Erasure deletes a respondent's answers, touch events and sessions and keeps a tombstone
-- (respondents.erased_at, with email and subject cleared) so evidence ids that pointed to them
-- resolve to "erased" and a later export can prove the respondent is gone.

ALTER TABLE sites ADD COLUMN identity_secret text
    CHECK (identity_secret IS NULL OR length(identity_secret) >= 16);
ALTER TABLE sessions ADD COLUMN subject text;
ALTER TABLE sessions ADD COLUMN verified boolean NOT NULL DEFAULT false;
CREATE INDEX sessions_subject ON sessions (site_id, subject) WHERE subject IS NOT NULL;
CREATE INDEX respondents_email ON respondents (site_id, lower(email)) WHERE email IS NOT NULL;
CREATE INDEX answers_site_created ON answers (site_id, created_at);
CREATE INDEX touch_events_site_created ON touch_events (site_id, created_at);

-- Erases one respondent (by id, or every respondent of the site with that email or verified
-- subject). Idempotent: erasing again reports zero rows. Returns counts.
CREATE FUNCTION jd_erase(p_site_id bigint, p_respondent uuid, p_email text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    targets uuid[];
    n_answers bigint;
    n_touches bigint;
    n_sessions bigint;
    n_respondents bigint;
BEGIN
    SELECT coalesce(array_agg(DISTINCT r.id), '{}') INTO targets
    FROM respondents r
    WHERE r.site_id = p_site_id
      AND (r.id = p_respondent
           OR (p_email IS NOT NULL AND lower(r.email) = lower(p_email))
           OR (p_email IS NOT NULL AND r.id IN (SELECT s.respondent_id FROM sessions s
                                               WHERE s.site_id = p_site_id
                                                 AND s.subject = p_email)));
    DELETE FROM answers WHERE site_id = p_site_id AND respondent_id = ANY (targets);
    GET DIAGNOSTICS n_answers = ROW_COUNT;
    DELETE FROM touch_events WHERE site_id = p_site_id AND respondent_id = ANY (targets);
    GET DIAGNOSTICS n_touches = ROW_COUNT;
    DELETE FROM sessions WHERE site_id = p_site_id AND respondent_id = ANY (targets);
    GET DIAGNOSTICS n_sessions = ROW_COUNT;
    UPDATE respondents SET erased_at = coalesce(erased_at, now()), email = NULL, subject = NULL,
                           verified = false
    WHERE site_id = p_site_id AND id = ANY (targets) AND erased_at IS NULL;
    GET DIAGNOSTICS n_respondents = ROW_COUNT;
    RETURN jsonb_build_object('respondents', n_respondents, 'answers', n_answers,
                              'touch_events', n_touches, 'sessions', n_sessions);
END $$;

-- Everything stored about one respondent, as one JSON document (right of access).
CREATE FUNCTION jd_respondent_access(p_site_id bigint, p_respondent uuid)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'respondent', (SELECT to_jsonb(r) FROM respondents r
                       WHERE r.site_id = p_site_id AND r.id = p_respondent),
        'sessions', (SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.started_at), '[]')
                     FROM sessions s WHERE s.site_id = p_site_id AND s.respondent_id = p_respondent),
        'touch_events', (SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.created_at), '[]')
                         FROM touch_events t
                         WHERE t.site_id = p_site_id AND t.respondent_id = p_respondent),
        'answers', (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.created_at), '[]')
                    FROM answers a WHERE a.site_id = p_site_id AND a.respondent_id = p_respondent))
$$;

-- Deletes at most p_batch raw rows older than each site's retention window and returns how many.
-- Called repeatedly by the daemon's housekeeping timer; small batches keep locks short so ingest
-- never stalls. Sessions go last, once their answers and touches are gone.
CREATE FUNCTION jd_purge_expired(p_batch integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    done integer := 0;
    n integer;
BEGIN
    WITH doomed AS (
        SELECT a.id FROM answers a JOIN sites s ON s.id = a.site_id
        WHERE s.retention_days IS NOT NULL
          AND a.created_at < now() - make_interval(days => s.retention_days)
        LIMIT p_batch)
    DELETE FROM answers a USING doomed WHERE a.id = doomed.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    done := done + n;
    IF done >= p_batch THEN RETURN done; END IF;

    WITH doomed AS (
        SELECT t.id FROM touch_events t JOIN sites s ON s.id = t.site_id
        WHERE s.retention_days IS NOT NULL
          AND t.created_at < now() - make_interval(days => s.retention_days)
        LIMIT p_batch - done)
    DELETE FROM touch_events t USING doomed WHERE t.id = doomed.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    done := done + n;
    IF done >= p_batch THEN RETURN done; END IF;

    WITH doomed AS (
        SELECT se.id FROM sessions se JOIN sites s ON s.id = se.site_id
        WHERE s.retention_days IS NOT NULL
          AND se.started_at < now() - make_interval(days => s.retention_days)
          AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.session_id = se.id)
        LIMIT p_batch - done)
    DELETE FROM sessions se USING doomed WHERE se.id = doomed.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN done + n;
END $$;
