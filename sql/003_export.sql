-- Journey map export: the evidence of one map aggregated into the canonical journey.json document
-- ("format": "journeyd.map/1", schema in proto/journey-map.schema.json, guide in docs/export.md),
-- numbered snapshots of it (map_versions) and the diff between two snapshots. Everything is
-- set-based: each part of the document is one grouped query over answers (GROUPING SETS for the
-- persona x stage x touchpoint cells, the per-stage rollups and the "all personas" view), never a
-- loop over rows. The daemon renders the other file formats (CSV, Mermaid, draw.io, HTML) from this
-- document in C (daemon/src/export.c).
--
--   jd_export_filters(map_id, filters)  validated filters (400/404 errors as SQLSTATE JDnnn)
--   jd_map_export(map_id, filters)      the document
--   jd_map_snapshot(map_id, filters)    saves the document as the map's next version, returns it
--   jd_map_diff(map_id, v1, v2)         per cell: emotion change + Welch t test, obstacles, n
--
-- Statistics (per cell, over answers that carry an emotion 1..5): mean, sample standard deviation,
-- and a 95% confidence interval mean +- t(0.975, n-1) * sd / sqrt(n) (Student's t, exact table to
-- df 30, Cornish-Fisher expansion above; null below 2 answers; not clamped to 1..5).
-- Quotes never come from erased respondents, nor from sessions without consent on opt-in sites.

CREATE TABLE map_versions (
    id         bigserial PRIMARY KEY,
    map_id     bigint NOT NULL REFERENCES maps (id) ON DELETE CASCADE,
    version    integer NOT NULL CHECK (version >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    filters    jsonb NOT NULL DEFAULT '{}',
    document   jsonb NOT NULL,
    UNIQUE (map_id, version)
);

-- The canonical filters of one export.
CREATE TYPE jd_export_filter AS (
    map_id           bigint,
    site_id          bigint,
    persona_id       bigint,   -- NULL = all personas
    t_from           timestamptz,
    t_to             timestamptz,  -- exclusive
    sources          text[],
    min_evidence     integer,
    top_n            integer,  -- obstacles and actions per cell
    quotes_n         integer,  -- quotes per cell
    evidence_n       integer,  -- evidence ids per cell
    conversion_stage bigint
);

CREATE FUNCTION jd__export_fail(p_status int, p_code text, p_message text, p_field text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'JD' || p_status::text, MESSAGE = p_message,
                          DETAIL = p_code, HINT = coalesce(p_field, '');
END $$;

-- Two-sided 95% quantile of Student's t with df degrees of freedom.
CREATE FUNCTION jd__t975(df numeric) RETURNS double precision LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE
        WHEN df < 1 THEN NULL
        WHEN df <= 30 AND df = trunc(df) THEN (ARRAY[12.706205, 4.302653, 3.182446, 2.776445, 2.570582,
            2.446912, 2.364624, 2.306004, 2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787,
            2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658,
            2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272])[df::int]
        ELSE (SELECT z + (z ^ 3 + z) / (4 * d) + (5 * z ^ 5 + 16 * z ^ 3 + 3 * z) / (96 * d ^ 2)
                     + (3 * z ^ 7 + 19 * z ^ 5 + 17 * z ^ 3 - 15 * z) / (384 * d ^ 3)
                     + (79 * z ^ 9 + 776 * z ^ 7 + 1482 * z ^ 5 - 1920 * z ^ 3 - 945 * z) / (92160 * d ^ 4)
              FROM (SELECT 1.959963984540054::double precision AS z, df::double precision AS d) c)
    END
$$;

-- lgamma is not in PostgreSQL 15: Lanczos approximation (g = 7, n = 9), for x > 0.
CREATE FUNCTION jd__lgamma(x double precision) RETURNS double precision LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    c constant double precision[] := ARRAY[0.99999999999980993, 676.5203681218851, -1259.1392167224028,
        771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012,
        9.9843695780195716e-6, 1.5056327351493116e-7];
    a double precision;
    tt double precision;
    y double precision := x - 1;
BEGIN
    IF x < 0.5 THEN
        RETURN ln(pi() / abs(sin(pi() * x))) - jd__lgamma(1 - x);
    END IF;
    a := c[1];
    FOR i IN 1..8 LOOP
        a := a + c[i + 1] / (y + i);
    END LOOP;
    tt := y + 7.5;
    RETURN 0.5 * ln(2 * pi()) + (y + 0.5) * ln(tt) - tt + ln(a);
END $$;

-- Upper tail probability of Student's t (two-sided p value for |t| with df degrees of freedom),
-- by Simpson integration of the density: accurate to ~1e-6, enough for a significance flag.
CREATE FUNCTION jd__t_pvalue(t double precision, df double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE STRICT AS $$
    WITH p AS (SELECT abs(t) AS x, df AS v),
    grid AS (SELECT i, (p.x * i / 400.0) AS u FROM p, generate_series(0, 400) i),
    dens AS (SELECT i, power(1 + u * u / p.v, -(p.v + 1) / 2) AS f FROM grid, p),
    c AS (SELECT exp(jd__lgamma((p.v + 1) / 2) - jd__lgamma(p.v / 2)) / sqrt(p.v * pi()) AS k FROM p)
    SELECT CASE WHEN (SELECT x FROM p) = 0 THEN 1.0
                ELSE greatest(0.0, least(1.0, 1 - 2 * (SELECT k FROM c) * (SELECT x FROM p) / 400.0 / 3.0
                     * (SELECT sum(f * CASE WHEN i = 0 OR i = 400 THEN 1 WHEN i % 2 = 1 THEN 4 ELSE 2 END)
                        FROM dens))) END
$$;

-- Resolves a persona/stage reference (id as number or digits, or slug) inside a map.
CREATE FUNCTION jd__export_ref(p_table regclass, p_map bigint, p_ref jsonb, p_field text)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    rid bigint;
    txt text := CASE jsonb_typeof(p_ref) WHEN 'string' THEN p_ref #>> '{}'
                                          WHEN 'number' THEN p_ref #>> '{}' END;
BEGIN
    IF txt IS NULL THEN
        PERFORM jd__export_fail(400, 'invalid_value', format('%s must be an id or a slug', p_field), p_field);
    END IF;
    IF txt ~ '^[0-9]{1,18}$' THEN
        EXECUTE format('SELECT id FROM %s WHERE map_id = $1 AND id = $2', p_table) INTO rid USING p_map, txt::bigint;
    END IF;
    IF rid IS NULL THEN
        EXECUTE format('SELECT id FROM %s WHERE map_id = $1 AND slug = $2', p_table) INTO rid USING p_map, txt;
    END IF;
    IF rid IS NULL THEN
        PERFORM jd__export_fail(404, 'not_found', format('%s "%s" is not in map %s', p_field, txt, p_map), p_field);
    END IF;
    RETURN rid;
END $$;

CREATE FUNCTION jd__export_time(p jsonb, p_field text) RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p IS NULL OR jsonb_typeof(p) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p) <> 'string' OR (p #>> '{}') !~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$' THEN
        PERFORM jd__export_fail(400, 'invalid_value', format('%s must be a date or an RFC 3339 timestamp', p_field), p_field);
    END IF;
    RETURN (p #>> '{}')::timestamptz;
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
    PERFORM jd__export_fail(400, 'invalid_value', format('%s is not a valid time', p_field), p_field);
    RETURN NULL;
END $$;

CREATE FUNCTION jd__export_int(p jsonb, p_field text, p_default int, p_min int, p_max int)
RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p IS NULL OR jsonb_typeof(p) = 'null' THEN
        RETURN p_default;
    END IF;
    IF jsonb_typeof(p) <> 'number' OR (p #>> '{}') !~ '^-?[0-9]+$'
       OR (p #>> '{}')::numeric NOT BETWEEN p_min AND p_max THEN
        PERFORM jd__export_fail(400, 'invalid_value', format('%s must be an integer from %s to %s', p_field, p_min, p_max), p_field);
    END IF;
    RETURN (p #>> '{}')::int;
END $$;

-- Validates the filters object: {"persona": id|slug|"all"|null, "from", "to": date or timestamp
-- (to exclusive), "site": id|key, "source": "survey"|"chat"|"interview" or an array of them,
-- "min_evidence": 1.., "top": 1..50, "quotes": 0..20, "evidence": 0..20,
-- "conversion_stage": id|slug}. Unknown keys are refused so a typo never exports unfiltered data.
CREATE FUNCTION jd_export_filters(p_map_id bigint, p_filters jsonb DEFAULT '{}')
RETURNS jd_export_filter LANGUAGE plpgsql STABLE AS $$
DECLARE
    f jd_export_filter;
    m maps;
    k text;
    v jsonb;
    src jsonb;
BEGIN
    p_filters := coalesce(p_filters, '{}');
    IF jsonb_typeof(p_filters) <> 'object' THEN
        PERFORM jd__export_fail(400, 'invalid_body', 'filters must be a JSON object');
    END IF;
    SELECT * INTO m FROM maps WHERE id = p_map_id;
    IF NOT FOUND THEN
        PERFORM jd__export_fail(404, 'not_found', format('no map %s', p_map_id));
    END IF;
    FOR k IN SELECT jsonb_object_keys(p_filters) LOOP
        IF k NOT IN ('persona', 'from', 'to', 'site', 'source', 'min_evidence', 'top', 'quotes',
                     'evidence', 'conversion_stage') THEN
            PERFORM jd__export_fail(400, 'unknown_field', format('unknown filter "%s"', k), k);
        END IF;
    END LOOP;
    f.map_id := m.id;
    v := p_filters -> 'persona';
    IF v IS NOT NULL AND jsonb_typeof(v) <> 'null' AND v <> '"all"' AND v <> '""' THEN
        f.persona_id := jd__export_ref('personas', m.id, v, 'persona');
    END IF;
    f.t_from := jd__export_time(p_filters -> 'from', 'from');
    f.t_to := jd__export_time(p_filters -> 'to', 'to');
    IF f.t_from IS NOT NULL AND f.t_to IS NOT NULL AND f.t_from >= f.t_to THEN
        PERFORM jd__export_fail(400, 'invalid_value', 'from must be before to', 'from');
    END IF;
    v := p_filters -> 'site';
    IF v IS NOT NULL AND jsonb_typeof(v) <> 'null' THEN
        SELECT s.id INTO f.site_id FROM sites s
         WHERE (jsonb_typeof(v) = 'number' AND s.id::text = v #>> '{}')
            OR (jsonb_typeof(v) = 'string' AND (s.key = v #>> '{}' OR s.id::text = v #>> '{}'));
        IF f.site_id IS NULL THEN
            PERFORM jd__export_fail(404, 'not_found', format('no site %s', v), 'site');
        END IF;
        IF f.site_id <> m.site_id THEN
            PERFORM jd__export_fail(400, 'invalid_value', format('map %s does not belong to site %s', m.id, v), 'site');
        END IF;
    END IF;
    f.site_id := m.site_id;
    src := p_filters -> 'source';
    IF src IS NULL OR jsonb_typeof(src) = 'null' OR src = '"all"' THEN
        f.sources := ARRAY['survey', 'chat', 'interview'];
    ELSE
        IF jsonb_typeof(src) = 'string' THEN
            src := jsonb_build_array(src);
        END IF;
        IF jsonb_typeof(src) <> 'array' OR jsonb_array_length(src) = 0
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(src) e
                      WHERE jsonb_typeof(e) <> 'string' OR e #>> '{}' NOT IN ('survey', 'chat', 'interview')) THEN
            PERFORM jd__export_fail(400, 'invalid_value', 'source must be survey, chat, interview or an array of them', 'source');
        END IF;
        SELECT array_agg(DISTINCT e ORDER BY e) INTO f.sources FROM jsonb_array_elements_text(src) e;
    END IF;
    f.min_evidence := jd__export_int(p_filters -> 'min_evidence', 'min_evidence', m.min_evidence, 1, 1000000);
    f.top_n := jd__export_int(p_filters -> 'top', 'top', 5, 1, 50);
    f.quotes_n := jd__export_int(p_filters -> 'quotes', 'quotes', 3, 0, 20);
    f.evidence_n := jd__export_int(p_filters -> 'evidence', 'evidence', 20, 0, 20);
    v := p_filters -> 'conversion_stage';
    IF v IS NOT NULL AND jsonb_typeof(v) <> 'null' THEN
        f.conversion_stage := jd__export_ref('stages', m.id, v, 'conversion_stage');
    ELSE
        -- The stage called "purchase", else the last stage but one (the one before advocacy or
        -- loyalty), else the only stage.
        SELECT coalesce((SELECT id FROM stages WHERE map_id = m.id AND slug = 'purchase'),
                        (SELECT id FROM stages WHERE map_id = m.id ORDER BY position DESC, id DESC
                         OFFSET CASE WHEN (SELECT count(*) FROM stages WHERE map_id = m.id) > 1 THEN 1 ELSE 0 END
                         LIMIT 1))
          INTO f.conversion_stage;
    END IF;
    RETURN f;
END $$;

-- The filters as they are echoed in the document (canonical: ids, slugs, RFC 3339 times).
CREATE FUNCTION jd__export_filters_json(f jd_export_filter) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'persona', (SELECT slug FROM personas WHERE id = f.persona_id),
        'from', to_jsonb(f.t_from), 'to', to_jsonb(f.t_to),
        'site', f.site_id, 'source', to_jsonb(f.sources),
        'min_evidence', f.min_evidence, 'top', f.top_n, 'quotes', f.quotes_n,
        'evidence', f.evidence_n,
        'conversion_stage', (SELECT slug FROM stages WHERE id = f.conversion_stage))
$$;

-- Quote text as it may leave the database: the site's export redaction when it asks for it.
CREATE FUNCTION jd__export_quote_text(p_text text, p_redact text) RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_redact = 'export' AND to_regprocedure('jd_chat_redact(text)') IS NOT NULL THEN
        EXECUTE 'SELECT jd_chat_redact($1)' INTO p_text USING p_text;
    END IF;
    RETURN p_text;
END $$;

-- The stable id of a cell: p{persona id|all}-s{stage id}[-t{touchpoint id}]. A group of answers
-- without a persona (or touchpoint) that is not rolled up over it gets "none", which no cell has.
CREATE FUNCTION jd__cell_key(p_all_personas boolean, p_persona bigint, p_stage bigint,
                             p_all_touchpoints boolean, p_touchpoint bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'p' || CASE WHEN p_all_personas THEN 'all' ELSE coalesce(p_persona::text, 'none') END
           || '-s' || p_stage::text
           || CASE WHEN p_all_touchpoints THEN '' ELSE '-t' || coalesce(p_touchpoint::text, 'none') END
$$;

-- The heavy scans of jd_map_export, each a set-returning function because PL/pgSQL may run a
-- RETURN QUERY with parallel workers (a SELECT INTO never gets them). Each takes the validated
-- filters.

-- Answers grouped by (persona, stage, touchpoint, emotion): counts, goals, obstacle answers and
-- the newest id of each group. (Plain columns only: the planner then estimates a few hundred
-- groups and aggregates in parallel; an expression such as id % 20 in the key made it expect a
-- million groups and run serially, 0.45 s against 0.25 s at 1M answers.)
CREATE FUNCTION jd__export_fine(f jd_export_filter, p_okq bigint[])
RETURNS TABLE (persona_id bigint, stage_id bigint, touchpoint_id bigint, emotion smallint,
               n bigint, gn bigint, gy bigint, obn bigint, mx bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
        SELECT a.persona_id, a.stage_id, a.touchpoint_id, a.emotion,
               count(*), count(a.goal_reached), count(*) FILTER (WHERE a.goal_reached),
               count(*) FILTER (WHERE cardinality(a.obstacle_ids) > 0 OR a.question_id = ANY (p_okq)),
               max(a.id)
          FROM answers a
         WHERE a.map_id = f.map_id AND a.site_id = f.site_id AND a.stage_id IS NOT NULL
                   AND (f.persona_id IS NULL OR a.persona_id = f.persona_id)
                   AND (f.t_from IS NULL OR a.created_at >= f.t_from)
                   AND (f.t_to IS NULL OR a.created_at < f.t_to)
                   AND a.source = ANY (f.sources)
         GROUP BY 1, 2, 3, 4;
END $$;

-- Respondents grouped by stage with a bit mask of the (persona, touchpoint) pairs they answered
-- in (bit p * nt + t; p = np-1 / t = nt-1 for no persona / no touchpoint), then counted per
-- distinct mask. Needs np * nt <= 63.
CREATE FUNCTION jd__export_resp(f jd_export_filter, p_personas bigint[], p_tps bigint[])
RETURNS TABLE (stage_id bigint, ptm bigint, c bigint)
LANGUAGE plpgsql STABLE
-- Partial aggregation barely shrinks (stage, respondent) groups: workers only add a Gather of
-- ~800k rows (2.2 s against 1.3 s serial at 1M answers).
SET max_parallel_workers_per_gather = 0 AS $$
DECLARE
    np int := cardinality(p_personas) + 1;
    nt int := cardinality(p_tps) + 1;
BEGIN
    RETURN QUERY
        SELECT sr.stage_id, sr.ptm, count(*)
          FROM (SELECT a.stage_id,
                       bit_or(1::bigint << ((coalesce(array_position(p_personas, a.persona_id), np) - 1) * nt
                                            + coalesce(array_position(p_tps, a.touchpoint_id), nt) - 1)) AS ptm
                  FROM answers a
                 WHERE a.map_id = f.map_id AND a.site_id = f.site_id AND a.stage_id IS NOT NULL
                   AND (f.persona_id IS NULL OR a.persona_id = f.persona_id)
                   AND (f.t_from IS NULL OR a.created_at >= f.t_from)
                   AND (f.t_to IS NULL OR a.created_at < f.t_to)
                   AND a.source = ANY (f.sources)
                   AND a.respondent_id IS NOT NULL
                 GROUP BY a.stage_id, a.respondent_id) sr
         GROUP BY 1, 2;
END $$;

-- Sessions in scope by the stages they reached (bit i = the i-th stage of p_stages, from touch
-- events and answers), counted per mask.
CREATE FUNCTION jd__export_masks(f jd_export_filter, p_stages bigint[])
RETURNS TABLE (mask bigint, c bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
        SELECT mk.mask, count(*)
          FROM (SELECT x.session_id, bit_or(1::bigint << (array_position(p_stages, x.stage_id) - 1)) AS mask
                  FROM (SELECT t.session_id, t.stage_id FROM touch_events t
                         WHERE t.site_id = f.site_id AND t.stage_id = ANY (p_stages)
                           AND (f.t_from IS NULL OR t.created_at >= f.t_from)
                           AND (f.t_to IS NULL OR t.created_at < f.t_to)
                        UNION ALL
                        SELECT a.session_id, a.stage_id FROM answers a
                         WHERE a.map_id = f.map_id AND a.site_id = f.site_id AND a.session_id IS NOT NULL
                           AND a.stage_id = ANY (p_stages)
                           AND (f.t_from IS NULL OR a.created_at >= f.t_from)
                           AND (f.t_to IS NULL OR a.created_at < f.t_to)
                           AND a.source = ANY (f.sources)) x
                 GROUP BY x.session_id) mk
         WHERE (f.persona_id IS NULL AND f.t_from IS NULL AND f.t_to IS NULL)
            OR EXISTS (SELECT 1 FROM sessions se
                        WHERE se.id = mk.session_id AND se.site_id = f.site_id
                          AND (f.persona_id IS NULL OR se.persona_id = f.persona_id)
                          AND (f.t_from IS NULL OR se.started_at >= f.t_from)
                          AND (f.t_to IS NULL OR se.started_at < f.t_to))
         GROUP BY 1;
END $$;

-- The answers that carry obstacles, actions (or choices of p_actq questions) or quotes.
CREATE FUNCTION jd__export_extras(f jd_export_filter, p_actq bigint[])
RETURNS TABLE (id bigint, persona_id bigint, stage_id bigint, touchpoint_id bigint, question_id bigint,
               obstacle_ids bigint[], action text, choice text[], source text, created_at timestamptz,
               site_id bigint, respondent_id uuid, session_id uuid, txt text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
        SELECT a.id, a.persona_id, a.stage_id, a.touchpoint_id, a.question_id, a.obstacle_ids,
               nullif(btrim(a.action), ''), a.choice, a.source, a.created_at, a.site_id,
               a.respondent_id, a.session_id,
               coalesce(nullif(btrim(a.quote), ''), nullif(btrim(a.thought), ''))
          FROM answers a
         WHERE a.map_id = f.map_id AND a.site_id = f.site_id AND a.stage_id IS NOT NULL
                   AND (f.persona_id IS NULL OR a.persona_id = f.persona_id)
                   AND (f.t_from IS NULL OR a.created_at >= f.t_from)
                   AND (f.t_to IS NULL OR a.created_at < f.t_to)
                   AND a.source = ANY (f.sources)
           AND (a.obstacle_ids <> '{}' OR a.action IS NOT NULL OR a.quote IS NOT NULL
                OR a.thought IS NOT NULL OR (a.choice IS NOT NULL AND a.question_id = ANY (p_actq)));
END $$;

-- The canonical journey.json document of one map. See docs/export.md for every field.
CREATE FUNCTION jd_map_export(p_map_id bigint, p_filters jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE plpgsql STABLE
-- JIT compilation cost ~2.7 s per export at 1M answers and saved nothing; the grouped passes
-- need memory to hash and sort without spilling (bench/export.sh, docs/export.md).
SET jit = off SET work_mem = '128MB' AS $$
DECLARE
    f jd_export_filter := jd_export_filters(p_map_id, p_filters);
    m maps;
    st sites;
    j_personas jsonb;
    j_stages jsonb;
    j_touchpoints jsonb;
    j_obstacles jsonb;
    j_cells jsonb;
    j_stage_metrics jsonb;
    j_conversion jsonb;
    j_resources jsonb;
    v_okq bigint[];     -- obstacle questions of the map
    v_actq bigint[];    -- questions in the actions lane (their choices are actions)
    v_stages bigint[];
    v_stats jsonb;      -- cell key -> counts and sums
    v_resp jsonb;       -- cell key -> distinct respondents
    v_personas bigint[];
    v_tps bigint[];
    v_np int;
    v_nt int;
BEGIN
    SELECT * INTO m FROM maps WHERE id = f.map_id;
    SELECT coalesce(array_agg(q.id), '{}') INTO v_actq
      FROM questions q JOIN surveys sv ON sv.id = q.survey_id
     WHERE sv.map_id = f.map_id AND q.lane = 'actions';
    SELECT coalesce(array_agg(id ORDER BY position, id), '{}') INTO v_personas
      FROM personas WHERE map_id = f.map_id;
    SELECT coalesce(array_agg(id ORDER BY position, id), '{}') INTO v_tps
      FROM touchpoints WHERE map_id = f.map_id;
    -- the map's stages in order; a session's stages are a bit mask over the first 63
    SELECT coalesce((array_agg(id ORDER BY position, id))[1:63], '{}') INTO v_stages
      FROM stages WHERE map_id = f.map_id;
    SELECT * INTO st FROM sites WHERE id = m.site_id;

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', p.id, 'key', 'persona:' || p.slug, 'slug', p.slug, 'name', p.name,
               'age_min', p.age_min, 'age_max', p.age_max, 'job_role', p.job_role,
               'family_status', p.family_status, 'professional_goals', p.professional_goals,
               'personal_interests', p.personal_interests, 'description', p.description,
               'position', p.position) ORDER BY p.position, p.id), '[]')
      INTO j_personas
      FROM personas p WHERE p.map_id = m.id AND (f.persona_id IS NULL OR p.id = f.persona_id);

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', s.id, 'key', 'stage:' || s.slug, 'slug', s.slug, 'name', s.name,
               'meaning', s.meaning, 'position', s.position) ORDER BY s.position, s.id), '[]')
      INTO j_stages FROM stages s WHERE s.map_id = m.id;

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', t.id, 'key', 'touchpoint:' || t.slug, 'slug', t.slug, 'name', t.name,
               'channel', t.channel, 'position', t.position,
               'stages', (SELECT coalesce(jsonb_agg(ts.stage_id ORDER BY s.position, s.id), '[]')
                            FROM touchpoint_stages ts JOIN stages s ON s.id = ts.stage_id
                           WHERE ts.touchpoint_id = t.id)) ORDER BY t.position, t.id), '[]')
      INTO j_touchpoints FROM touchpoints t WHERE t.map_id = m.id;

    SELECT coalesce(jsonb_agg(jsonb_build_object('id', o.id, 'slug', o.slug, 'name', o.name,
               'description', o.description) ORDER BY o.position, o.id), '[]')
      INTO j_obstacles FROM obstacles o WHERE o.map_id = m.id;

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', r.id, 'stage_id', r.stage_id, 'kind', r.kind, 'name', r.name,
               'notes', r.notes, 'owner', r.owner) ORDER BY s.position, s.id, r.position, r.id), '[]')
      INTO j_resources
      FROM stage_resources r JOIN stages s ON s.id = r.stage_id WHERE s.map_id = m.id;

    -- ---- cells ---------------------------------------------------------------------------------
    -- Each part is one grouped pass over the filtered answers with GROUPING SETS for the four cell
    -- levels: persona x stage x touchpoint, persona x stage, all x stage x touchpoint, all x stage.
    -- Groups are matched by their key, the cell id (answers without a persona or touchpoint get a
    -- "none" key: they count in the rollups only). Measured in bench/export.sh.
    SELECT coalesce(array_agg(q.id), '{}') INTO v_okq
      FROM questions q JOIN surveys sv ON sv.id = q.survey_id
     WHERE sv.map_id = f.map_id AND q.kind = 'obstacle';

    -- Counts and emotion sums: one hashed pass groups the answers by (persona, stage,
    -- touchpoint, emotion) with only five aggregates; the rollups to the four cell levels then
    -- run over those few hundred rows. (GROUPING SETS straight over the answers evaluates every
    -- aggregate four times per answer and ran 3x slower.) Evidence: the newest answer of each
    -- emotion value (1..5 and none) of each finest cell, newest first, at most 20.
    SELECT coalesce(jsonb_object_agg(x.k, to_jsonb(x) - 'k'), '{}') INTO v_stats FROM (
        SELECT jd__cell_key(GROUPING(fine.persona_id) = 1, fine.persona_id, fine.stage_id,
                            GROUPING(fine.touchpoint_id) = 1, fine.touchpoint_id) AS k,
               sum(fine.n)::bigint AS n,
               coalesce(sum(fine.n) FILTER (WHERE fine.emotion IS NOT NULL), 0)::bigint AS en,
               coalesce(sum(fine.n * fine.emotion), 0)::numeric AS es,
               coalesce(sum(fine.n * fine.emotion * fine.emotion), 0)::numeric AS ess,
               ARRAY[coalesce(sum(fine.n) FILTER (WHERE fine.emotion = 1), 0),
                     coalesce(sum(fine.n) FILTER (WHERE fine.emotion = 2), 0),
                     coalesce(sum(fine.n) FILTER (WHERE fine.emotion = 3), 0),
                     coalesce(sum(fine.n) FILTER (WHERE fine.emotion = 4), 0),
                     coalesce(sum(fine.n) FILTER (WHERE fine.emotion = 5), 0)]::bigint[] AS dist,
               sum(fine.gn)::bigint AS gn, sum(fine.gy)::bigint AS gy, sum(fine.obn)::bigint AS obn,
               (array_agg(fine.mx ORDER BY fine.mx DESC))[1:20] AS ev
          FROM jd__export_fine(f, v_okq) fine
         GROUP BY GROUPING SETS ((fine.persona_id, fine.stage_id, fine.touchpoint_id),
                                 (fine.persona_id, fine.stage_id),
                                 (fine.stage_id, fine.touchpoint_id), (fine.stage_id))
    ) x;

    -- Distinct respondents. count(DISTINCT) over GROUPING SETS sorts every answer twice (2.4 s at
    -- 1M answers), so when personas x touchpoints fit a 63-bit mask: one hashed pass groups the
    -- answers by (stage, respondent) with bit masks of the personas, touchpoints and (persona,
    -- touchpoint) pairs the respondent answered in; respondents with the same masks are counted
    -- together (a few thousand combinations), and each cell counts the combinations whose mask
    -- has its bit. Exact, like the fallback below. Bit np-1 / nt-1 stands for "no persona" /
    -- "no touchpoint": those answers count in the rollups only.
    v_np := cardinality(v_personas) + 1;
    v_nt := cardinality(v_tps) + 1;
    IF v_np * v_nt <= 63 THEN
        WITH combos AS MATERIALIZED (SELECT * FROM jd__export_resp(f, v_personas, v_tps)),
        pl AS (   -- a persona's bits: all its (persona, touchpoint) pairs
            SELECT i - 1 AS pi, v_personas[i] AS pid,
                   (SELECT bit_or(1::bigint << ((i - 1) * v_nt + t)) FROM generate_series(0, v_nt - 1) t) AS bits
              FROM generate_subscripts(v_personas, 1) i),
        tl AS (   -- a touchpoint's bits: its pairs with every persona (and with none)
            SELECT i - 1 AS ti, v_tps[i] AS tid,
                   (SELECT bit_or(1::bigint << (p * v_nt + i - 1)) FROM generate_series(0, v_np - 1) p) AS bits
              FROM generate_subscripts(v_tps, 1) i),
        counts AS (
            SELECT jd__cell_key(true, NULL, c.stage_id, true, NULL) AS k, sum(c.c) AS n
              FROM combos c GROUP BY c.stage_id
            UNION ALL
            SELECT jd__cell_key(false, pl.pid, c.stage_id, true, NULL), sum(c.c)
              FROM combos c JOIN pl ON c.ptm & pl.bits <> 0 GROUP BY pl.pid, c.stage_id
            UNION ALL
            SELECT jd__cell_key(true, NULL, c.stage_id, false, tl.tid), sum(c.c)
              FROM combos c JOIN tl ON c.ptm & tl.bits <> 0 GROUP BY tl.tid, c.stage_id
            UNION ALL
            SELECT jd__cell_key(false, pl.pid, c.stage_id, false, tl.tid), sum(c.c)
              FROM combos c CROSS JOIN pl JOIN tl ON c.ptm & (1::bigint << (pl.pi * v_nt + tl.ti)) <> 0
             GROUP BY pl.pid, tl.tid, c.stage_id
        )
        SELECT coalesce(jsonb_object_agg(k, n), '{}') INTO v_resp FROM counts;
    ELSE
        SELECT coalesce(jsonb_object_agg(x.k, x.resp), '{}') INTO v_resp FROM (
            SELECT jd__cell_key(GROUPING(a.persona_id) = 1, a.persona_id, a.stage_id,
                                GROUPING(a.touchpoint_id) = 1, a.touchpoint_id) AS k,
                   count(DISTINCT a.respondent_id) AS resp
              FROM answers a
             WHERE a.map_id = f.map_id AND a.site_id = f.site_id AND a.stage_id IS NOT NULL
               AND (f.persona_id IS NULL OR a.persona_id = f.persona_id)
               AND (f.t_from IS NULL OR a.created_at >= f.t_from)
               AND (f.t_to IS NULL OR a.created_at < f.t_to)
               AND a.source = ANY (f.sources)
             GROUP BY GROUPING SETS ((a.persona_id, a.stage_id, a.touchpoint_id), (a.persona_id, a.stage_id),
                                     (a.stage_id, a.touchpoint_id), (a.stage_id))
        ) x;
    END IF;

    WITH ex AS MATERIALIZED (SELECT * FROM jd__export_extras(f, v_actq)),   -- one scan for obstacles, actions, quotes
    stats AS (
        SELECT e.key AS k, (e.value ->> 'n')::bigint AS n, (e.value ->> 'en')::bigint AS en,
               (e.value ->> 'es')::numeric AS es, (e.value ->> 'ess')::numeric AS ess,
               ARRAY(SELECT d::bigint FROM jsonb_array_elements_text(e.value -> 'dist') d) AS dist,
               (e.value ->> 'gn')::bigint AS gn, (e.value ->> 'gy')::bigint AS gy,
               (e.value ->> 'obn')::bigint AS obn,
               ARRAY(SELECT v::bigint FROM jsonb_array_elements_text(e.value -> 'ev') v) AS ev
          FROM jsonb_each(v_stats) e
    ),
    resp AS (SELECT e.key AS k, (e.value #>> '{}')::bigint AS resp FROM jsonb_each(v_resp) e),
    obs AS (   -- per finest cell first (one hash table), then the four levels over those rows
        SELECT jd__cell_key(GROUPING(o0.persona_id) = 1, o0.persona_id, o0.stage_id,
                            GROUPING(o0.touchpoint_id) = 1, o0.touchpoint_id) AS k,
               o0.oid, sum(o0.c)::bigint AS c
          FROM (SELECT ex.persona_id, ex.stage_id, ex.touchpoint_id, o.oid, count(*) AS c
                  FROM ex CROSS JOIN LATERAL unnest(ex.obstacle_ids) o(oid)
                 WHERE ex.obstacle_ids <> '{}'
                 GROUP BY 1, 2, 3, 4) o0
         GROUP BY GROUPING SETS ((o0.persona_id, o0.stage_id, o0.touchpoint_id, o0.oid),
                                 (o0.persona_id, o0.stage_id, o0.oid),
                                 (o0.stage_id, o0.touchpoint_id, o0.oid), (o0.stage_id, o0.oid))
    ),
    obs_top AS (
        SELECT o.k, jsonb_agg(jsonb_build_object('id', o.oid, 'slug', ob.slug, 'name', ob.name,
                                                 'count', o.c, 'share', round(o.c::numeric / nullif(s.obn, 0), 4))
                              ORDER BY o.c DESC, ob.position, o.oid) AS items
          FROM (SELECT obs.*, row_number() OVER (PARTITION BY obs.k ORDER BY obs.c DESC, obs.oid) AS rn FROM obs) o
          JOIN obstacles ob ON ob.id = o.oid AND ob.map_id = f.map_id
          JOIN stats s ON s.k = o.k
         WHERE o.rn <= f.top_n
         GROUP BY o.k
    ),
    acts_raw AS (   -- free-text actions and choices of questions in the actions lane
        SELECT ex.persona_id, ex.stage_id, ex.touchpoint_id, ex.question_id, x.txt, count(*) AS c
          FROM ex
          CROSS JOIN LATERAL (SELECT ex.action AS txt WHERE ex.action IS NOT NULL
                              UNION ALL
                              SELECT ch FROM unnest(ex.choice) ch
                               WHERE ex.question_id = ANY (v_actq)) x
         WHERE ex.action IS NOT NULL OR (ex.choice IS NOT NULL AND ex.question_id = ANY (v_actq))
         GROUP BY 1, 2, 3, 4, 5
    ),
    acts_lab AS (   -- a choice is shown by its option label
        SELECT r.persona_id, r.stage_id, r.touchpoint_id,
               coalesce((SELECT e ->> 'label' FROM questions q,
                                jsonb_array_elements(CASE WHEN jsonb_typeof(q.options) = 'array' THEN q.options ELSE '[]' END) e
                          WHERE q.id = r.question_id AND r.question_id = ANY (v_actq) AND e ->> 'value' = r.txt
                          LIMIT 1), r.txt) AS txt, r.c
          FROM acts_raw r
    ),
    acts AS (
        SELECT jd__cell_key(GROUPING(persona_id) = 1, persona_id, stage_id,
                            GROUPING(touchpoint_id) = 1, touchpoint_id) AS k,
               txt, sum(c)::bigint AS c
          FROM acts_lab
         GROUP BY GROUPING SETS ((persona_id, stage_id, touchpoint_id, txt), (persona_id, stage_id, txt),
                                 (stage_id, touchpoint_id, txt), (stage_id, txt))
    ),
    acts_top AS (
        SELECT k, jsonb_agg(jsonb_build_object('text', txt, 'count', c) ORDER BY c DESC, txt) AS items
          FROM (SELECT acts.*, row_number() OVER (PARTITION BY k ORDER BY c DESC, txt) AS rn FROM acts) x
         WHERE rn <= f.top_n
         GROUP BY k
    ),
    qa AS (   -- quotable answers: not erased, consented where the site asks for consent
        -- (anti-joins against the few erased respondents and unconsented sessions; on an opt-in
        -- site a survey or chat quote needs a session that consented)
        SELECT ex.id, ex.persona_id, ex.stage_id, ex.touchpoint_id, ex.source, ex.created_at, ex.txt
          FROM ex
         WHERE ex.txt IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM respondents r
                            WHERE r.site_id = f.site_id AND r.id = ex.respondent_id
                              AND r.erased_at IS NOT NULL)
           AND (ex.source = 'interview'
                OR CASE WHEN st.consent_mode = 'opt-in'
                        THEN EXISTS (SELECT 1 FROM sessions se WHERE se.id = ex.session_id AND se.consent)
                        ELSE NOT EXISTS (SELECT 1 FROM sessions se
                                          WHERE se.id = ex.session_id AND se.consent_mode = 'opt-in'
                                            AND NOT se.consent) END)
    ),
    q0 AS (   -- the best quotes of each finest cell; a rollup's best are among its parts' best
        SELECT * FROM (
            SELECT qa.*, row_number() OVER (PARTITION BY qa.persona_id, qa.stage_id, qa.touchpoint_id
                                            ORDER BY (length(qa.txt) BETWEEN 20 AND 280) DESC,
                                                     qa.created_at DESC, qa.id DESC) AS rn0
              FROM qa) x
         WHERE rn0 <= f.quotes_n
    ),
    qk AS (
        SELECT k.k, q0.id, q0.txt, q0.source, q0.created_at,
               row_number() OVER (PARTITION BY k.k ORDER BY (length(q0.txt) BETWEEN 20 AND 280) DESC,
                                  q0.created_at DESC, q0.id DESC) AS rn
          FROM q0 CROSS JOIN LATERAL (VALUES
                   (jd__cell_key(false, q0.persona_id, q0.stage_id, false, q0.touchpoint_id)),
                   (jd__cell_key(false, q0.persona_id, q0.stage_id, true, NULL)),
                   (jd__cell_key(true, NULL, q0.stage_id, false, q0.touchpoint_id)),
                   (jd__cell_key(true, NULL, q0.stage_id, true, NULL))) k(k)
    ),
    quotes AS (
        SELECT k, jsonb_agg(jsonb_build_object('text', jd__export_quote_text(txt, st.redact),
                                               'evidence', 'answer:' || id, 'source', source,
                                               'at', created_at) ORDER BY rn) AS items
          FROM qk WHERE rn <= f.quotes_n GROUP BY k
    ),
    grid AS (   -- every cell of the map, with or without evidence
        SELECT p.id AS persona_id, p.position AS ppos, s.id AS stage_id, s.position AS spos,
               t.id AS touchpoint_id, t.position AS tpos,
               jd__cell_key(p.id IS NULL, p.id, s.id, t.id IS NULL, t.id) AS k
          FROM (SELECT id, position FROM personas WHERE map_id = f.map_id
                   AND (f.persona_id IS NULL OR id = f.persona_id)
                UNION ALL SELECT NULL, 2147483647) p
          CROSS JOIN stages s
          CROSS JOIN LATERAL (SELECT tp.id, tp.position FROM touchpoints tp
                                WHERE tp.map_id = f.map_id
                                  AND (EXISTS (SELECT 1 FROM touchpoint_stages ts
                                                WHERE ts.touchpoint_id = tp.id AND ts.stage_id = s.id)
                                       OR EXISTS (SELECT 1 FROM stats x
                                                   WHERE x.k = jd__cell_key(true, NULL, s.id, false, tp.id)))
                              UNION ALL SELECT NULL, -1) t
         WHERE s.map_id = f.map_id
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', g.k,
               'persona_id', g.persona_id, 'stage_id', g.stage_id, 'touchpoint_id', g.touchpoint_id,
               'level', CASE WHEN g.touchpoint_id IS NULL THEN 'stage' ELSE 'cell' END,
               'n', coalesce(r.n, 0), 'respondents', coalesce(rs.resp, 0),
               'thin', coalesce(r.n, 0) < f.min_evidence,
               'emotion', jsonb_build_object(
                   'n', coalesce(r.en, 0),
                   'mean', round(r.es / nullif(r.en, 0), 4),
                   'sd', CASE WHEN r.en >= 2 THEN round(sqrt(greatest(r.ess - r.es * r.es / r.en, 0) / (r.en - 1)), 4) END,
                   'ci95', CASE WHEN r.en >= 2 THEN jsonb_build_array(
                       round((r.es / r.en - jd__t975(r.en - 1)
                              * sqrt(greatest(r.ess - r.es * r.es / r.en, 0) / (r.en - 1)) / sqrt(r.en))::numeric, 4),
                       round((r.es / r.en + jd__t975(r.en - 1)
                              * sqrt(greatest(r.ess - r.es * r.es / r.en, 0) / (r.en - 1)) / sqrt(r.en))::numeric, 4)) END,
                   'distribution', to_jsonb(coalesce(r.dist, ARRAY[0, 0, 0, 0, 0]::bigint[]))),
               'goal', jsonb_build_object('n', coalesce(r.gn, 0), 'reached', coalesce(r.gy, 0),
                                          'rate', round(r.gy::numeric / nullif(r.gn, 0), 4)),
               'obstacle_answers', coalesce(r.obn, 0),
               'obstacles', coalesce(ot.items, '[]'),
               'actions', coalesce(ac.items, '[]'),
               'quotes', coalesce(qu.items, '[]'),
               'evidence', coalesce((SELECT jsonb_agg('answer:' || e ORDER BY e DESC)
                                       FROM (SELECT e FROM unnest(r.ev) e WHERE e IS NOT NULL
                                              ORDER BY e DESC LIMIT f.evidence_n) x), '[]'))
             ORDER BY g.ppos, g.persona_id, g.spos, g.stage_id, g.tpos, g.touchpoint_id), '[]')
      INTO j_cells
      FROM grid g
      LEFT JOIN stats r ON r.k = g.k
      LEFT JOIN resp rs ON rs.k = g.k
      LEFT JOIN obs_top ot ON ot.k = g.k
      LEFT JOIN acts_top ac ON ac.k = g.k
      LEFT JOIN quotes qu ON qu.k = g.k;

    -- ---- per stage: sessions reaching it, drop-off to the next stage, goal-reached rate ---------
    -- A session reaches a stage when it has a touch event or an answer tagged with it. Sessions
    -- count when they started in the window (and, with a persona filter, carry that persona).
    -- One pass: each session's stages as a bit mask (stage order index, up to 63 stages).
    WITH ord AS (
        SELECT s.id, s.position, (row_number() OVER (ORDER BY s.position, s.id) - 1)::int AS idx,
               lead(s.id) OVER (ORDER BY s.position, s.id) AS next_id
          FROM stages s WHERE s.map_id = f.map_id
    ),
    sm AS (SELECT * FROM jd__export_masks(f, v_stages)),
    total AS (SELECT coalesce(sum(c), 0)::bigint AS n FROM sm),
    per AS (
        SELECT o.id,
               coalesce(sum(sm.c) FILTER (WHERE sm.mask & (1::bigint << o.idx) <> 0), 0)::bigint AS reached,
               coalesce(sum(sm.c) FILTER (WHERE sm.mask & (1::bigint << o.idx) <> 0 AND o.idx < 62
                                            AND sm.mask & (1::bigint << (o.idx + 1)) <> 0), 0)::bigint AS continued
          FROM ord o CROSS JOIN sm
         GROUP BY o.id
    ),
    goals AS (   -- the all-personas stage rollups already hold them
        SELECT o.id AS stage_id, (e.value ->> 'gn')::bigint AS gn, (e.value ->> 'gy')::bigint AS gy
          FROM ord o JOIN jsonb_each(v_stats) e ON e.key = jd__cell_key(true, NULL, o.id, true, NULL)
    )
    SELECT jsonb_build_object(
               'sessions', (SELECT n FROM total),
               'stages', coalesce(jsonb_agg(jsonb_build_object(
                   'stage_id', o.id,
                   'sessions_reached', coalesce(p.reached, 0),
                   'share_reached', round(p.reached::numeric / nullif((SELECT n FROM total), 0), 4),
                   'next_stage_id', o.next_id,
                   'continued', CASE WHEN o.next_id IS NOT NULL THEN coalesce(p.continued, 0) END,
                   'drop_off', CASE WHEN o.next_id IS NOT NULL
                                    THEN round(1 - p.continued::numeric / nullif(p.reached, 0), 4) END,
                   'goal', jsonb_build_object('n', coalesce(g.gn, 0), 'reached', coalesce(g.gy, 0),
                                              'rate', round(g.gy::numeric / nullif(g.gn, 0), 4)))
                   ORDER BY o.idx), '[]'))
      INTO j_stage_metrics
      FROM ord o LEFT JOIN per p ON p.id = o.id LEFT JOIN goals g ON g.stage_id = o.id;

    -- ---- touches before purchase --------------------------------------------------------------
    -- A respondent converts at their first answer with goal_reached = true in the conversion
    -- stage; their touches are their touch events on the site before that moment (and inside the
    -- window).
    WITH conv AS (
        SELECT a.respondent_id, min(a.created_at) AS conv_at
          FROM answers a
         WHERE a.map_id = f.map_id AND a.site_id = f.site_id AND a.stage_id = f.conversion_stage
           AND a.goal_reached AND a.respondent_id IS NOT NULL
           AND (f.persona_id IS NULL OR a.persona_id = f.persona_id)
           AND (f.t_from IS NULL OR a.created_at >= f.t_from)
           AND (f.t_to IS NULL OR a.created_at < f.t_to)
           AND a.source = ANY (f.sources)
         GROUP BY 1
    ),
    tb AS (
        SELECT c.respondent_id, count(t.id) AS touches
          FROM conv c
          LEFT JOIN touch_events t ON t.site_id = f.site_id AND t.respondent_id = c.respondent_id
                                  AND t.created_at < c.conv_at
                                  AND (f.t_from IS NULL OR t.created_at >= f.t_from)
         GROUP BY 1
    ),
    dist AS (SELECT touches, count(*) AS respondents FROM tb GROUP BY 1)
    SELECT jsonb_build_object(
               'stage_id', f.conversion_stage,
               'converted', (SELECT count(*) FROM tb),
               'touches_median', (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY touches) FROM tb),
               'touches_mean', (SELECT round(avg(touches), 4) FROM tb),
               'distribution', (SELECT coalesce(jsonb_agg(jsonb_build_object('touches', touches,
                                    'respondents', respondents) ORDER BY touches), '[]') FROM dist))
      INTO j_conversion;

    RETURN jsonb_build_object(
        'format', 'journeyd.map/1',
        'generated_at', to_jsonb(now()),
        'filters', jd__export_filters_json(f),
        'map', jsonb_build_object('id', m.id, 'key', 'map:' || m.slug, 'slug', m.slug, 'name', m.name,
                                  'goal', m.goal, 'scope', m.scope, 'customer_group', m.customer_group,
                                  'min_evidence', m.min_evidence, 'site_id', m.site_id,
                                  'site_name', st.name),
        'personas', j_personas,
        'stages', j_stages,
        'touchpoints', j_touchpoints,
        'obstacles', j_obstacles,
        'cells', j_cells,
        'stage_metrics', j_stage_metrics,
        'conversion', j_conversion,
        'resources', j_resources);
END $$;

-- Saves the export as the map's next version (1, 2, ...) and returns the document with its
-- "version". Concurrent snapshots of one map serialise on the map row.
CREATE FUNCTION jd_map_snapshot(p_map_id bigint, p_filters jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    doc jsonb;
    v int;
BEGIN
    PERFORM 1 FROM maps WHERE id = p_map_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM jd__export_fail(404, 'not_found', format('no map %s', p_map_id));
    END IF;
    doc := jd_map_export(p_map_id, p_filters);
    SELECT coalesce(max(version), 0) + 1 INTO v FROM map_versions WHERE map_id = p_map_id;
    doc := doc || jsonb_build_object('version', v);
    INSERT INTO map_versions (map_id, version, filters, document)
    VALUES (p_map_id, v, doc -> 'filters', doc);
    RETURN doc;
END $$;

-- The name of the persona/stage/touchpoint with that id in a document (NULL when absent).
CREATE FUNCTION jd__doc_name(p_doc jsonb, p_list text, p_id jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT e ->> 'name' FROM jsonb_array_elements(p_doc -> p_list) e WHERE e -> 'id' = p_id LIMIT 1
$$;

-- Compares two saved versions cell by cell (cells matched by their stable id). Per cell: n and
-- respondents before/after, the emotion means, their difference, Welch's t, its degrees of
-- freedom (Welch-Satterthwaite), two-sided p and "significant" (p < 0.05), and the obstacles that
-- are new (in v2's top list only) or resolved (in v1's only).
CREATE FUNCTION jd_map_diff(p_map_id bigint, p_v1 int, p_v2 int)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    d1 jsonb;
    d2 jsonb;
    cells jsonb;
BEGIN
    SELECT document INTO d1 FROM map_versions WHERE map_id = p_map_id AND version = p_v1;
    IF d1 IS NULL THEN
        PERFORM jd__export_fail(404, 'not_found', format('map %s has no version %s', p_map_id, p_v1), 'v1');
    END IF;
    SELECT document INTO d2 FROM map_versions WHERE map_id = p_map_id AND version = p_v2;
    IF d2 IS NULL THEN
        PERFORM jd__export_fail(404, 'not_found', format('map %s has no version %s', p_map_id, p_v2), 'v2');
    END IF;
    WITH c1 AS (SELECT c ->> 'id' AS id, c FROM jsonb_array_elements(d1 -> 'cells') c),
    c2 AS (SELECT c ->> 'id' AS id, c FROM jsonb_array_elements(d2 -> 'cells') c),
    j AS (
        SELECT coalesce(c2.id, c1.id) AS id, c1.c AS a, c2.c AS b,
               (c1.c #>> '{emotion,n}')::double precision AS n1, (c2.c #>> '{emotion,n}')::double precision AS n2,
               (c1.c #>> '{emotion,mean}')::double precision AS m1, (c2.c #>> '{emotion,mean}')::double precision AS m2,
               (c1.c #>> '{emotion,sd}')::double precision AS s1, (c2.c #>> '{emotion,sd}')::double precision AS s2
          FROM c1 FULL JOIN c2 ON c1.id = c2.id
    ),
    w AS (
        SELECT j.*, s1 * s1 / n1 AS v1, s2 * s2 / n2 AS v2 FROM j
    ),
    t AS (
        SELECT w.*,
               CASE WHEN n1 >= 2 AND n2 >= 2 AND v1 + v2 > 0 THEN (m2 - m1) / sqrt(v1 + v2) END AS tval,
               CASE WHEN n1 >= 2 AND n2 >= 2 AND v1 + v2 > 0
                    THEN (v1 + v2) ^ 2 / (v1 ^ 2 / (n1 - 1) + v2 ^ 2 / (n2 - 1)) END AS df
          FROM w
    ),
    r AS (
        SELECT t.*, CASE WHEN tval IS NOT NULL THEN jd__t_pvalue(tval, df) END AS p FROM t
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', r.id,
               'persona', CASE WHEN coalesce(r.b, r.a) -> 'persona_id' = 'null' THEN 'All personas'
                               ELSE coalesce(jd__doc_name(d2, 'personas', coalesce(r.b, r.a) -> 'persona_id'),
                                             jd__doc_name(d1, 'personas', coalesce(r.b, r.a) -> 'persona_id')) END,
               'stage', coalesce(jd__doc_name(d2, 'stages', coalesce(r.b, r.a) -> 'stage_id'),
                                 jd__doc_name(d1, 'stages', coalesce(r.b, r.a) -> 'stage_id')),
               'touchpoint', coalesce(jd__doc_name(d2, 'touchpoints', coalesce(r.b, r.a) -> 'touchpoint_id'),
                                      jd__doc_name(d1, 'touchpoints', coalesce(r.b, r.a) -> 'touchpoint_id')),
               'persona_id', coalesce(r.b, r.a) -> 'persona_id',
               'stage_id', coalesce(r.b, r.a) -> 'stage_id',
               'touchpoint_id', coalesce(r.b, r.a) -> 'touchpoint_id',
               'status', CASE WHEN r.a IS NULL THEN 'added' WHEN r.b IS NULL THEN 'removed' ELSE 'both' END,
               'n', jsonb_build_object('v1', coalesce((r.a ->> 'n')::bigint, 0), 'v2', coalesce((r.b ->> 'n')::bigint, 0),
                                       'change', coalesce((r.b ->> 'n')::bigint, 0) - coalesce((r.a ->> 'n')::bigint, 0)),
               'respondents', jsonb_build_object('v1', coalesce((r.a ->> 'respondents')::bigint, 0),
                                                 'v2', coalesce((r.b ->> 'respondents')::bigint, 0)),
               'emotion', jsonb_build_object(
                   'v1', r.m1, 'v2', r.m2,
                   'change', round((r.m2 - r.m1)::numeric, 4),
                   'welch_t', round(r.tval::numeric, 4), 'df', round(r.df::numeric, 2),
                   'p', round(r.p::numeric, 4),
                   'significant', coalesce(r.p < 0.05, false)),
               'obstacles_new', coalesce((SELECT jsonb_agg(o ORDER BY (o ->> 'count')::bigint DESC)
                                          FROM jsonb_array_elements(r.b -> 'obstacles') o
                                         WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r.a -> 'obstacles') o1
                                                            WHERE o1 -> 'id' = o -> 'id')), '[]'),
               'obstacles_resolved', coalesce((SELECT jsonb_agg(o ORDER BY (o ->> 'count')::bigint DESC)
                                               FROM jsonb_array_elements(r.a -> 'obstacles') o
                                              WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r.b -> 'obstacles') o2
                                                                 WHERE o2 -> 'id' = o -> 'id')), '[]'))
             ORDER BY r.id), '[]')
      INTO cells FROM r;
    RETURN jsonb_build_object(
        'format', 'journeyd.map-diff/1',
        'map_id', p_map_id,
        'map_name', d2 #>> '{map,name}',
        'v1', jsonb_build_object('version', p_v1, 'created_at', d1 -> 'generated_at', 'filters', d1 -> 'filters'),
        'v2', jsonb_build_object('version', p_v2, 'created_at', d2 -> 'generated_at', 'filters', d2 -> 'filters'),
        'cells', cells);
END $$;
