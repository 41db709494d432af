-- Saved map versions keep their aggregates (n, emotion statistics, obstacle counts) forever, but
-- never a quote whose answer is gone: erased respondents and purged (past retention) data must not
-- survive in a snapshot's text. A statement trigger on answers does it for every kind of delete
-- (jd_erase, jd_purge_expired, cascades), rewriting only the versions of the maps touched.

CREATE FUNCTION jd_versions_drop_missing_quotes(p_map_ids bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE map_versions v
       SET document = jsonb_set(v.document, '{cells}', (
               SELECT coalesce(jsonb_agg(
                          CASE WHEN jsonb_typeof(c -> 'quotes') = 'array' THEN
                              jsonb_set(c, '{quotes}', (
                                  SELECT coalesce(jsonb_agg(q ORDER BY o), '[]')
                                    FROM jsonb_array_elements(c -> 'quotes') WITH ORDINALITY AS x(q, o)
                                   WHERE NOT (q ->> 'evidence' ~ '^answer:[0-9]+$'
                                              AND NOT EXISTS (SELECT 1 FROM answers a
                                                              WHERE a.id = substr(q ->> 'evidence', 8)::bigint))))
                          ELSE c END ORDER BY ci), '[]')
                 FROM jsonb_array_elements(v.document -> 'cells') WITH ORDINALITY AS y(c, ci)))
     WHERE v.map_id = ANY (p_map_ids)
       AND jsonb_typeof(v.document -> 'cells') = 'array';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE FUNCTION jd_answers_gone_from_versions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    maps bigint[];
BEGIN
    SELECT array_agg(DISTINCT g.map_id) INTO maps FROM gone g
     WHERE EXISTS (SELECT 1 FROM map_versions v WHERE v.map_id = g.map_id);
    IF maps IS NOT NULL THEN
        PERFORM jd_versions_drop_missing_quotes(maps);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER answers_gone_from_versions AFTER DELETE ON answers
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION jd_answers_gone_from_versions();
