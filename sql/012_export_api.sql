-- Map export through the admin API: GET /maps/{id}/export (filters in the query; ?format= picks
-- the file, rendered by the daemon from the canonical document), snapshots as numbered versions
-- (POST/GET /maps/{id}/versions, GET /maps/{id}/versions/{v}) and GET /maps/{id}/diff?v1=&v2=
-- (the latest two versions when v1 and v2 are left out).
-- Access is checked like every map route (jd__site_of: 404 unknown, 403 another site's map) and
-- every export is audited.

CREATE FUNCTION jd__export_query_filters(q jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    -- Query values are strings; numeric filters are converted, rendering options dropped.
    SELECT coalesce(jsonb_object_agg(k, CASE WHEN k IN ('min_evidence', 'top', 'quotes', 'evidence', 'conversion_stage')
                                                   AND v ~ '^[0-9]+$' THEN to_jsonb(v::bigint)
                                              ELSE to_jsonb(v) END), '{}')
    FROM jsonb_each_text(q) AS e(k, v)
    WHERE k NOT IN ('format', 'limit', 'offset', 'render_persona')
$$;

CREATE FUNCTION jd__h_export(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    site bigint := jd__site_of(c, 'map', p[1]);
    doc jsonb := jd_map_export(p[1]::bigint, jd__export_query_filters(q));
BEGIN
    PERFORM jd__audit(c, 'export', 'map', p[1], site,
                      jsonb_build_object('format', coalesce(q ->> 'format', 'json'),
                                         'filters', jd__export_query_filters(q)));
    RETURN jd__ok(doc);
END $$;

CREATE FUNCTION jd__h_versions(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    site bigint := jd__site_of(c, 'map', p[1]);
    filters jsonb;
    doc jsonb;
BEGIN
    IF p[2] IS NOT NULL THEN
        SELECT v.document INTO doc FROM map_versions v
        WHERE v.map_id = p[1]::bigint AND v.version::text = p[2];
        IF doc IS NULL THEN
            RETURN jd__error(404, 'not_found', format('map %s has no version %s', p[1], p[2]));
        END IF;
        RETURN jd__ok(doc);
    END IF;
    IF m = 'GET' THEN
        RETURN jd__ok(jsonb_build_object('items', (
            SELECT coalesce(jsonb_agg(jsonb_build_object('version', v.version, 'created_at', v.created_at,
                                                         'filters', v.filters) ORDER BY v.version), '[]')
            FROM map_versions v WHERE v.map_id = p[1]::bigint)));
    END IF;
    filters := CASE WHEN b IS NULL OR btrim(b) = '' THEN jd__export_query_filters(q) ELSE jd__body_object(b) END;
    doc := jd_map_snapshot(p[1]::bigint, filters);
    PERFORM jd__audit(c, 'snapshot', 'map', p[1], site, jsonb_build_object('version', doc -> 'version'));
    RETURN jd__ok(jsonb_build_object('version', doc -> 'version', 'document', doc), 201);
END $$;

CREATE FUNCTION jd__h_diff(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    site bigint := jd__site_of(c, 'map', p[1]);
    latest int;
    v1 int;
    v2 int;
BEGIN
    FOREACH latest IN ARRAY ARRAY[1, 2] LOOP
        IF q ? ('v' || latest) AND q ->> ('v' || latest) !~ '^[0-9]+$' THEN
            RETURN jd__error(400, 'invalid_type', 'versions are whole numbers', 'v' || latest);
        END IF;
    END LOOP;
    SELECT max(version) INTO latest FROM map_versions WHERE map_id = p[1]::bigint;
    v2 := coalesce((q ->> 'v2')::int, latest);
    v1 := coalesce((q ->> 'v1')::int, (SELECT max(version) FROM map_versions
                                       WHERE map_id = p[1]::bigint AND version < v2));
    IF v1 IS NULL OR v2 IS NULL THEN
        RETURN jd__error(404, 'not_found', 'a diff needs two saved versions (POST /maps/{id}/versions)');
    END IF;
    RETURN jd__ok(jd_map_diff(p[1]::bigint, v1, v2));
END $$;

INSERT INTO api_routes (template, methods, handler) VALUES
    ('/maps/{id}/export',          '{GET}',      'jd__h_export'),
    ('/maps/{id}/versions',        '{GET,POST}', 'jd__h_versions'),
    ('/maps/{id}/versions/{v}',    '{GET}',      'jd__h_versions'),
    ('/maps/{id}/diff',            '{GET}',      'jd__h_diff');
