-- Chat in the admin API, the map export and the privacy routes (issue 6; docs/chat.md "Open points
-- for the daemon glue" 5 and 6). sql/020_chat.sql holds the chat data layer; this migration wires
-- it into what earlier migrations built for survey answers:
--
--   1. Map export: coded chat messages (the chat_evidence view) are evidence like answers, with
--      source 'chat' and evidence ids 'message:{id}': emotions, obstacles, quotes, respondents,
--      stage reach and the evidence lists of jd_map_export (003), and so of snapshots and diffs.
--      A map without coded chat exports exactly as before. Saved versions lose the quotes of
--      deleted messages, as they do for answers (013).
--   2. Privacy: the erase routes (011) erase chats first (jd_erase_chat), then the respondent
--      (jd_erase), in one transaction; access includes the conversations (jd_chat_access).
--   3. Admin API routes: transcripts (GET /conversations, GET /conversations/{id}/transcript) as
--      JSONL, CSV, plain text or HTML with their own content types, and agent accounts
--      (/sites/{id}/agents). Handlers may now answer a non-JSON body (jd__raw); jd_api and
--      jd_admin pass its content type on.
--
-- Functions of earlier migrations are replaced with CREATE OR REPLACE under the same signature
-- (the files themselves are applied once and never edited); only 003's jd__export_resp and
-- jd__export_masks, which nothing but jd_map_export calls, are dropped and recreated with the
-- chat rows as one more parameter.

-- ===========================================================================================
-- 1. Map export
-- ===========================================================================================

-- One coded chat message (span) as the export reads it.
CREATE TYPE jd_export_chat_row AS (
    message_id    bigint,
    persona_id    bigint,
    stage_id      bigint,
    touchpoint_id bigint,
    emotion       smallint,
    obstacle_ids  bigint[],
    thought       text,
    respondent_id uuid,
    session_id    uuid,
    created_at    timestamptz
);

-- The map's coded chat messages in the export's scope: chat_evidence rows of the map and site
-- with a stage, in the persona filter and the time window (when the visitor wrote), when the
-- sources include 'chat'. chat_evidence already leaves out superseded codes, erased respondents
-- and unconsented opt-in sessions, and masks the text unless the site's redact is 'off'.
-- jd_map_export reads it once into an array that the passes below share (the view ranks every
-- code of every site, ~7 us per code: a scan per pass would cost four times that).
CREATE FUNCTION jd__export_chat(f jd_export_filter)
RETURNS SETOF jd_export_chat_row
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT 'chat' = ANY (f.sources) THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT ce.message_id, ce.persona_id, ce.stage_id, ce.touchpoint_id, ce.emotion,
               ce.obstacle_ids, ce.thought, ce.respondent_id, ce.session_id, ce.created_at
          FROM chat_evidence ce
         WHERE ce.map_id = f.map_id AND ce.site_id = f.site_id AND ce.stage_id IS NOT NULL
           AND (f.persona_id IS NULL OR ce.persona_id = f.persona_id)
           AND (f.t_from IS NULL OR ce.created_at >= f.t_from)
           AND (f.t_to IS NULL OR ce.created_at < f.t_to);
END $$;

-- The chat counterpart of jd__export_fine: coded messages grouped by (persona, stage, touchpoint,
-- emotion), with the newest message id of each group as cmx (mx, the answer id, is NULL). Chat
-- evidence carries no goal.
CREATE FUNCTION jd__export_chat_fine(p_chat jd_export_chat_row[])
RETURNS TABLE (persona_id bigint, stage_id bigint, touchpoint_id bigint, emotion smallint,
               n bigint, gn bigint, gy bigint, obn bigint, mx bigint, cmx bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
        SELECT c.persona_id, c.stage_id, c.touchpoint_id, c.emotion,
               count(*), 0::bigint, 0::bigint,
               count(*) FILTER (WHERE cardinality(c.obstacle_ids) > 0),
               NULL::bigint, max(c.message_id)
          FROM unnest(p_chat) c
         GROUP BY 1, 2, 3, 4;
END $$;

-- The chat counterpart of jd__export_extras (obstacles and quotes; chat has no actions), plus the
-- evidence id. A message coded on several spans gives one row per span.
CREATE FUNCTION jd__export_chat_extras(f jd_export_filter, p_chat jd_export_chat_row[])
RETURNS TABLE (id bigint, persona_id bigint, stage_id bigint, touchpoint_id bigint, question_id bigint,
               obstacle_ids bigint[], action text, choice text[], source text, created_at timestamptz,
               site_id bigint, respondent_id uuid, session_id uuid, txt text, evid text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
        SELECT c.message_id, c.persona_id, c.stage_id, c.touchpoint_id, NULL::bigint,
               c.obstacle_ids, NULL::text, NULL::text[], 'chat'::text, c.created_at, f.site_id,
               c.respondent_id, c.session_id, nullif(btrim(c.thought), ''), 'message:' || c.message_id
          FROM unnest(p_chat) c
         WHERE cardinality(c.obstacle_ids) > 0 OR nullif(btrim(c.thought), '') IS NOT NULL;
END $$;

-- A cell's evidence ids: its answers (newest id first, as before) and its coded chat messages
-- (newest first) taken in turns, at most p_n. Without chat this is the answers' list unchanged.
CREATE FUNCTION jd__export_evidence(p_ev bigint[], p_cev bigint[], p_n int)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_agg(y.e ORDER BY y.rk, y.src), '[]')
      FROM (SELECT x.e, x.rk, x.src
              FROM (SELECT 'answer:' || a AS e, row_number() OVER (ORDER BY a DESC) AS rk, 0 AS src
                      FROM unnest(p_ev) a WHERE a IS NOT NULL
                    UNION ALL
                    SELECT 'message:' || m, row_number() OVER (ORDER BY m DESC), 1
                      FROM (SELECT DISTINCT m FROM unnest(p_cev) m WHERE m IS NOT NULL) d) x
             ORDER BY x.rk, x.src
             LIMIT greatest(p_n, 0)) y
$$;

-- 003's respondents and stage-reach passes take the chat rows too (only jd_map_export calls them).
DROP FUNCTION jd__export_resp(jd_export_filter, bigint[], bigint[]);
DROP FUNCTION jd__export_masks(jd_export_filter, bigint[]);

-- Respondents by (stage, respondent) bit masks (see 003): answers and coded chat messages, so a
-- respondent who both answered and chatted in a cell counts once.
CREATE FUNCTION jd__export_resp(f jd_export_filter, p_personas bigint[], p_tps bigint[],
                                p_chat jd_export_chat_row[])
RETURNS TABLE (stage_id bigint, ptm bigint, c bigint)
LANGUAGE plpgsql STABLE
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
                  FROM (SELECT a.stage_id, a.persona_id, a.touchpoint_id, a.respondent_id
                          FROM answers a
                         WHERE a.map_id = f.map_id AND a.site_id = f.site_id AND a.stage_id IS NOT NULL
                           AND (f.persona_id IS NULL OR a.persona_id = f.persona_id)
                           AND (f.t_from IS NULL OR a.created_at >= f.t_from)
                           AND (f.t_to IS NULL OR a.created_at < f.t_to)
                           AND a.source = ANY (f.sources)
                           AND a.respondent_id IS NOT NULL
                        UNION ALL
                        SELECT ch.stage_id, ch.persona_id, ch.touchpoint_id, ch.respondent_id
                          FROM unnest(p_chat) ch
                         WHERE ch.respondent_id IS NOT NULL) a
                 GROUP BY a.stage_id, a.respondent_id) sr
         GROUP BY 1, 2;
END $$;

-- Sessions by the stages they reached (see 003): touch events, answers and coded chat messages.
CREATE FUNCTION jd__export_masks(f jd_export_filter, p_stages bigint[], p_chat jd_export_chat_row[])
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
                           AND a.source = ANY (f.sources)
                        UNION ALL
                        SELECT ch.session_id, ch.stage_id FROM unnest(p_chat) ch
                         WHERE ch.session_id IS NOT NULL AND ch.stage_id = ANY (p_stages)) x
                 GROUP BY x.session_id) mk
         WHERE (f.persona_id IS NULL AND f.t_from IS NULL AND f.t_to IS NULL)
            OR EXISTS (SELECT 1 FROM sessions se
                        WHERE se.id = mk.session_id AND se.site_id = f.site_id
                          AND (f.persona_id IS NULL OR se.persona_id = f.persona_id)
                          AND (f.t_from IS NULL OR se.started_at >= f.t_from)
                          AND (f.t_to IS NULL OR se.started_at < f.t_to))
         GROUP BY 1;
END $$;

-- The canonical journey.json document (see 003 and docs/export.md), now with coded chat messages:
-- the fine pass, the respondents (both paths), the extras scan (obstacles, quotes) and the
-- evidence lists read chat_evidence too. Everything else is 003's function unchanged.
CREATE OR REPLACE FUNCTION jd_map_export(p_map_id bigint, p_filters jsonb DEFAULT '{}')
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
    v_chat jd_export_chat_row[];  -- the coded chat messages in scope, read once
BEGIN
    SELECT * INTO m FROM maps WHERE id = f.map_id;
    SELECT coalesce(array_agg(c), '{}') INTO v_chat FROM jd__export_chat(f) c;
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
    -- aggregate four times per answer and ran 3x slower.) Coded chat messages (chat_evidence) are
    -- grouped the same way and added as more fine rows. Evidence: the newest answer (ev) and the
    -- newest coded chat message (cev) of each emotion value (1..5 and none) of each finest cell;
    -- jd__export_evidence interleaves them.
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
               (array_agg(fine.mx ORDER BY fine.mx DESC) FILTER (WHERE fine.mx IS NOT NULL))[1:20] AS ev,
               (array_agg(fine.cmx ORDER BY fine.cmx DESC) FILTER (WHERE fine.cmx IS NOT NULL))[1:20] AS cev
          FROM (SELECT a.*, NULL::bigint AS cmx FROM jd__export_fine(f, v_okq) a
                UNION ALL
                SELECT * FROM jd__export_chat_fine(v_chat)) fine
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
        WITH combos AS MATERIALIZED (SELECT * FROM jd__export_resp(f, v_personas, v_tps, v_chat)),
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
              FROM (SELECT a.persona_id, a.stage_id, a.touchpoint_id, a.respondent_id
                      FROM answers a
                     WHERE a.map_id = f.map_id AND a.site_id = f.site_id AND a.stage_id IS NOT NULL
                       AND (f.persona_id IS NULL OR a.persona_id = f.persona_id)
                       AND (f.t_from IS NULL OR a.created_at >= f.t_from)
                       AND (f.t_to IS NULL OR a.created_at < f.t_to)
                       AND a.source = ANY (f.sources)
                    UNION ALL
                    SELECT c.persona_id, c.stage_id, c.touchpoint_id, c.respondent_id
                      FROM unnest(v_chat) c) a
             GROUP BY GROUPING SETS ((a.persona_id, a.stage_id, a.touchpoint_id), (a.persona_id, a.stage_id),
                                     (a.stage_id, a.touchpoint_id), (a.stage_id))
        ) x;
    END IF;

    -- One scan for obstacles, actions and quotes: the answers that carry them, then the coded chat
    -- messages. evid is a chat message's evidence id (message:{id}); an answer's (answer:{id}) is
    -- made only for the few rows that become quotes.
    WITH ex AS MATERIALIZED (SELECT e.*, NULL::text AS evid FROM jd__export_extras(f, v_actq) e
                             UNION ALL
                             SELECT * FROM jd__export_chat_extras(f, v_chat)),
    stats AS (
        SELECT e.key AS k, (e.value ->> 'n')::bigint AS n, (e.value ->> 'en')::bigint AS en,
               (e.value ->> 'es')::numeric AS es, (e.value ->> 'ess')::numeric AS ess,
               ARRAY(SELECT d::bigint FROM jsonb_array_elements_text(e.value -> 'dist') d) AS dist,
               (e.value ->> 'gn')::bigint AS gn, (e.value ->> 'gy')::bigint AS gy,
               (e.value ->> 'obn')::bigint AS obn,
               ARRAY(SELECT v::bigint FROM jsonb_array_elements_text(
                         coalesce(nullif(e.value -> 'ev', 'null'), '[]')) v) AS ev,
               ARRAY(SELECT v::bigint FROM jsonb_array_elements_text(
                         coalesce(nullif(e.value -> 'cev', 'null'), '[]')) v) AS cev
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
        SELECT ex.id, ex.persona_id, ex.stage_id, ex.touchpoint_id, ex.source, ex.created_at, ex.txt, ex.evid
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
                                                     qa.created_at DESC, qa.id DESC, qa.evid) AS rn0
              FROM qa) x
         WHERE rn0 <= f.quotes_n
    ),
    qk AS (
        SELECT k.k, q0.id, q0.txt, q0.source, q0.created_at, q0.evid,
               row_number() OVER (PARTITION BY k.k ORDER BY (length(q0.txt) BETWEEN 20 AND 280) DESC,
                                  q0.created_at DESC, q0.id DESC, q0.evid) AS rn
          FROM q0 CROSS JOIN LATERAL (VALUES
                   (jd__cell_key(false, q0.persona_id, q0.stage_id, false, q0.touchpoint_id)),
                   (jd__cell_key(false, q0.persona_id, q0.stage_id, true, NULL)),
                   (jd__cell_key(true, NULL, q0.stage_id, false, q0.touchpoint_id)),
                   (jd__cell_key(true, NULL, q0.stage_id, true, NULL))) k(k)
    ),
    quotes AS (
        SELECT k, jsonb_agg(jsonb_build_object('text', jd__export_quote_text(txt, st.redact),
                                               'evidence', coalesce(evid, 'answer:' || id), 'source', source,
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
               'evidence', jd__export_evidence(r.ev, r.cev, f.evidence_n))
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
    sm AS (SELECT * FROM jd__export_masks(f, v_stages, v_chat)),
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

-- Saved versions (013): a quote whose answer or whose chat message is gone is dropped.
CREATE OR REPLACE FUNCTION jd_versions_drop_missing_quotes(p_map_ids bigint[]) RETURNS integer
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
                                   WHERE NOT coalesce(
                                       (q ->> 'evidence' ~ '^answer:[0-9]+$'
                                        AND NOT EXISTS (SELECT 1 FROM answers a
                                                        WHERE a.id = substr(q ->> 'evidence', 8)::bigint))
                                       OR (q ->> 'evidence' ~ '^message:[0-9]+$'
                                           AND NOT EXISTS (SELECT 1 FROM messages m
                                                           WHERE m.id = substr(q ->> 'evidence', 9)::bigint)),
                                       false)))
                          ELSE c END ORDER BY ci), '[]')
                 FROM jsonb_array_elements(v.document -> 'cells') WITH ORDINALITY AS y(c, ci)))
     WHERE v.map_id = ANY (p_map_ids)
       AND jsonb_typeof(v.document -> 'cells') = 'array';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Messages go with their conversation (jd_erase_chat, jd_chat_purge_expired, cascades). Only
-- visitor messages can be coded and quoted; the versions of the maps of their sites are checked.
CREATE FUNCTION jd_messages_gone_from_versions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    map_ids bigint[];
BEGIN
    SELECT array_agg(DISTINCT v.map_id) INTO map_ids
      FROM map_versions v JOIN maps m ON m.id = v.map_id
     WHERE m.site_id IN (SELECT DISTINCT g.site_id FROM gone g WHERE g.sender = 'visitor');
    IF map_ids IS NOT NULL THEN
        PERFORM jd_versions_drop_missing_quotes(map_ids);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_gone_from_versions AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION jd_messages_gone_from_versions();

-- ===========================================================================================
-- 2. Privacy: erasure order and access
-- ===========================================================================================

-- Erases a visitor everywhere: jd_erase_chat FIRST (it finds conversations by the e-mail and the
-- sessions that jd_erase clears), then jd_erase for the respondent (by id or e-mail) and for every
-- respondent whose conversations were erased (the visitor who left that e-mail in the offline
-- form is the same person). One transaction; idempotent. Returns
-- {"erased": jd_erase counts summed, "chat": {"conversations","messages","codes","ratings"}}.
CREATE FUNCTION jd_erase_respondent(p_site_id bigint, p_respondent uuid, p_email text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    chat jsonb;
    res jsonb;
    more jsonb;
    rid uuid;
BEGIN
    chat := jd_erase_chat(p_site_id, p_respondent, p_email);
    res := jd_erase(p_site_id, p_respondent, p_email);
    FOR rid IN SELECT x::uuid FROM jsonb_array_elements_text(chat -> 'respondents') x LOOP
        CONTINUE WHEN rid IS NOT DISTINCT FROM p_respondent;
        more := jd_erase(p_site_id, rid, NULL);
        SELECT jsonb_object_agg(k, coalesce((res ->> k)::bigint, 0) + coalesce((more ->> k)::bigint, 0))
          INTO res FROM jsonb_object_keys(res || more) k;
    END LOOP;
    RETURN jsonb_build_object(
        'erased', res,
        'chat', jsonb_build_object('conversations', chat -> 'conversations', 'messages', chat -> 'messages',
                                   'codes', chat -> 'codes', 'ratings', chat -> 'answers'));
END $$;

-- The site to act in for a respondent id (011), now also for a visitor known only from a chat
-- (a conversation may open before the ingest batch holding its respondent commits).
CREATE OR REPLACE FUNCTION jd__respondent_site(c jd_api_ctx, p_id uuid, p_site_ref text)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    sid bigint := coalesce(jd__site_ref(c, p_site_ref, 'site'), c.site_id);
    n int;
BEGIN
    SELECT count(*), min(x.site_id) INTO n, sid
      FROM (SELECT r.site_id FROM respondents r WHERE r.id = p_id AND (sid IS NULL OR r.site_id = sid)
            UNION
            SELECT cv.site_id FROM conversations cv
             WHERE cv.respondent_id = p_id AND (sid IS NULL OR cv.site_id = sid)) x;
    IF n = 0 THEN
        PERFORM jd__fail(404, 'not_found', format('no respondent %s', p_id));
    ELSIF n > 1 THEN
        PERFORM jd__fail(400, 'ambiguous', 'this respondent id exists in several sites; name one with ?site=', 'site');
    END IF;
    RETURN sid;
END $$;

-- /respondents/{uuid} (GET: access, now with "conversations") and /respondents/{uuid}/erase
-- (POST: chats first, then the respondent; "erased" keeps jd_erase's counts, "chat" is new).
CREATE OR REPLACE FUNCTION jd__h_respondent(c jd_api_ctx, m text, p text[], q jsonb, b text)
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
        res := jd_respondent_access(sid, rid) || jsonb_build_object('conversations', jd_chat_access(sid, rid));
        PERFORM jd__audit(c, 'access', 'respondent', rid::text, sid, '{}');
        RETURN jd__ok(res);
    END IF;
    res := jd_erase_respondent(sid, rid, NULL);
    PERFORM jd__audit(c, 'erase', 'respondent', rid::text, sid, (res -> 'erased') || jsonb_build_object('chat', res -> 'chat'));
    RETURN jd__ok(jsonb_build_object('site_id', sid, 'respondent', rid, 'erased', res -> 'erased', 'chat', res -> 'chat'));
END $$;

-- POST /erase {"email": "...", "site": id|key}: chats first, then every respondent with that
-- e-mail or verified subject (and the visitors whose chats carried it).
CREATE OR REPLACE FUNCTION jd__h_erase(c jd_api_ctx, m text, p text[], q jsonb, b text)
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
    res := jd_erase_respondent(sid, NULL, btrim(body ->> 'email'));
    PERFORM jd__audit(c, 'erase', 'respondent', NULL, sid,
                      jsonb_build_object('by', 'email') || (res -> 'erased') || jsonb_build_object('chat', res -> 'chat'));
    RETURN jd__ok(jsonb_build_object('site_id', sid, 'erased', res -> 'erased', 'chat', res -> 'chat'));
END $$;

-- ===========================================================================================
-- 3. Admin API: raw bodies, transcripts, agent accounts
-- ===========================================================================================

-- A response whose body is not JSON (a transcript file): carried through jd_api_resp as
-- {"jd:raw": {"content_type", "body"}} and unwrapped by jd_api/jd_admin (jd__api_row). No other
-- handler answers an object with that key.
CREATE FUNCTION jd__raw(p_status int, p_content_type text, p_body text)
RETURNS jd_api_resp LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(p_status, jsonb_build_object('jd:raw', jsonb_build_object(
        'content_type', p_content_type, 'body', coalesce(p_body, ''))))::jd_api_resp
$$;

-- What jd_api and jd_admin return for a handler's response: JSON, or the raw body and its type.
CREATE FUNCTION jd__api_row(r jd_api_resp, OUT status int, OUT content_type text, OUT body text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT r.status,
           CASE WHEN raw THEN r.body #>> '{jd:raw,content_type}' ELSE 'application/json' END,
           CASE WHEN raw THEN r.body #>> '{jd:raw,body}' ELSE r.body::text END
      FROM (SELECT jsonb_typeof(r.body) = 'object' AND r.body ? 'jd:raw'
                   AND jsonb_typeof(r.body -> 'jd:raw') = 'object'
                   AND (SELECT count(*) FROM jsonb_object_keys(r.body)) = 1 AS raw) x
$$;

-- 002's jd_admin and jd_api, unchanged except that a raw response keeps its content type.
CREATE OR REPLACE FUNCTION jd_admin(p_method text, p_path text, p_query jsonb, p_body text, p_actor text)
RETURNS TABLE (status int, content_type text, body text) LANGUAGE plpgsql AS $$
DECLARE
    resp jd_api_resp := jd__dispatch(ROW(coalesce(nullif(p_actor, ''), 'journeyctl'), 'admin', NULL, NULL)::jd_api_ctx,
                                     p_method, p_path, p_query, p_body);
BEGIN
    RETURN QUERY SELECT * FROM jd__api_row(resp);
END $$;

CREATE OR REPLACE FUNCTION jd_api(p_method text, p_path text, p_query jsonb, p_body text, p_token text)
RETURNS TABLE (status int, content_type text, body text) LANGUAGE plpgsql AS $$
DECLARE
    t admin_tokens;
    resp jd_api_resp;
BEGIN
    IF p_token IS NULL OR p_token = '' THEN
        resp := jd__error(401, 'unauthorized', 'a bearer token is required (Authorization: Bearer <token>)');
    ELSE
        SELECT * INTO t FROM admin_tokens a WHERE a.token_hash = jd__token_hash(p_token);
        IF NOT FOUND THEN
            resp := jd__error(401, 'unauthorized', 'unknown token');
        ELSIF t.revoked_at IS NOT NULL THEN
            resp := jd__error(401, 'unauthorized', 'this token was revoked');
        ELSIF t.expires_at IS NOT NULL AND t.expires_at <= now() THEN
            resp := jd__error(401, 'unauthorized', 'this token has expired');
        ELSE
            UPDATE admin_tokens a SET last_used_at = now() WHERE a.id = t.id;
            resp := jd__dispatch(ROW(t.name, t.scope, t.site_id, t.id)::jd_api_ctx, p_method, p_path, p_query, p_body);
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM jd__api_row(resp);
END $$;

-- A boolean query parameter that must be one: true/1/yes/on or false/0/no/off (NULL when absent
-- or empty); anything else is 400.
CREATE FUNCTION jd__qbool_strict(p_query jsonb, p_key text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v text := lower(coalesce(p_query ->> p_key, ''));
BEGIN
    IF v = '' THEN
        RETURN NULL;
    ELSIF v IN ('1', 'true', 'yes', 'on') THEN
        RETURN true;
    ELSIF v IN ('0', 'false', 'no', 'off') THEN
        RETURN false;
    END IF;
    PERFORM jd__fail(400, 'invalid_value', format('%s must be true or false', p_key), p_key);
    RETURN NULL;
END $$;

-- 400 unknown_field for a query parameter not in p_allowed.
CREATE FUNCTION jd__query_only(p_query jsonb, p_allowed text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k text;
BEGIN
    FOR k IN SELECT jsonb_object_keys(p_query) ORDER BY 1 LOOP
        IF NOT k = ANY (p_allowed) THEN
            PERFORM jd__fail(400, 'unknown_field',
                             format('unknown parameter "%s"; allowed: %s', k, array_to_string(p_allowed, ', ')), k);
        END IF;
    END LOOP;
END $$;

-- The content type of a transcript format.
CREATE FUNCTION jd__transcript_type(p_format text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_format
        WHEN 'jsonl' THEN 'application/x-ndjson; charset=utf-8'
        WHEN 'csv' THEN 'text/csv; charset=utf-8'
        WHEN 'text' THEN 'text/plain; charset=utf-8'
        WHEN 'html' THEN 'text/html; charset=utf-8' END
$$;

-- GET /conversations (bulk: ?site=&from=&to=&stage=&code=&coded=&redact=&notes=&limit=&format=)
-- and GET /conversations/{uuid}/transcript (?format=&redact=&notes=&site=): jd_transcript's file with
-- its content type. Chat text is personal data, so both need an admin-scope token (like
-- /respondents); a site-bound token reads its own site only. Every export is audited (the
-- filters, never content). html is jd_transcript's escaped fragment inside a minimal page.
CREATE FUNCTION jd__h_conversations(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    cid uuid;
    sid bigint;
    filters jsonb;
    fmt text := coalesce(nullif(q ->> 'format', ''), 'jsonl');
    lim text := nullif(q ->> 'limit', '');
    t_from timestamptz;
    t_to timestamptz;
    out text;
BEGIN
    PERFORM jd__need_admin(c);
    IF p[1] IS NOT NULL THEN
        cid := jd__uuid(p[1]);
        SELECT cv.site_id INTO sid FROM conversations cv WHERE cv.id = cid;
        IF sid IS NULL THEN
            RETURN jd__error(404, 'not_found', format('no conversation %s', p[1]));
        END IF;
        PERFORM jd__site_check(c, sid);
        PERFORM jd__query_only(q, ARRAY['site', 'format', 'redact', 'notes']);
        -- ?site= scopes the lookup: another site's conversation is not found there.
        IF nullif(q ->> 'site', '') IS NOT NULL AND jd__site_ref(c, q ->> 'site', 'site') IS DISTINCT FROM sid THEN
            RETURN jd__error(404, 'not_found', format('no conversation %s in site %s', p[1], q ->> 'site'));
        END IF;
        filters := jsonb_build_object('site_id', sid, 'conversation', cid);
    ELSE
        PERFORM jd__query_only(q, ARRAY['site', 'from', 'to', 'stage', 'code', 'coded', 'redact', 'notes',
                                        'limit', 'format']);
        sid := coalesce(jd__site_ref(c, q ->> 'site', 'site'), c.site_id);
        IF sid IS NULL THEN
            IF (SELECT count(*) FROM sites) = 1 THEN
                sid := (SELECT id FROM sites);
            ELSE
                PERFORM jd__fail(400, 'missing_field', 'name the site (?site= id or key)', 'site');
            END IF;
        END IF;
        filters := jsonb_build_object('site_id', sid);
        t_from := jd__export_time(to_jsonb(nullif(q ->> 'from', '')), 'from');
        t_to := jd__export_time(to_jsonb(nullif(q ->> 'to', '')), 'to');
        IF t_from IS NOT NULL AND t_to IS NOT NULL AND t_from >= t_to THEN
            PERFORM jd__fail(400, 'invalid_range', 'from must be before to', 'from');
        END IF;
        IF t_from IS NOT NULL THEN
            filters := filters || jsonb_build_object('from', t_from);
        END IF;
        IF t_to IS NOT NULL THEN
            filters := filters || jsonb_build_object('to', t_to);
        END IF;
        IF nullif(q ->> 'stage', '') IS NOT NULL THEN
            IF NOT EXISTS (SELECT 1 FROM stages s JOIN maps mp ON mp.id = s.map_id
                            WHERE mp.site_id = sid AND s.slug = q ->> 'stage') THEN
                PERFORM jd__fail(400, 'unknown_stage', format('no stage "%s" in this site''s maps', left(q ->> 'stage', 64)), 'stage');
            END IF;
            filters := filters || jsonb_build_object('stage', q ->> 'stage');
        END IF;
        IF nullif(q ->> 'code', '') IS NOT NULL THEN
            IF NOT EXISTS (SELECT 1 FROM obstacles o JOIN maps mp ON mp.id = o.map_id
                            WHERE mp.site_id = sid AND o.slug = q ->> 'code') THEN
                PERFORM jd__fail(400, 'unknown_obstacle', format('no obstacle "%s" in this site''s maps', left(q ->> 'code', 64)), 'code');
            END IF;
            filters := filters || jsonb_build_object('code', q ->> 'code');
        END IF;
        IF jd__qbool_strict(q, 'coded') THEN
            filters := filters || '{"coded": true}';
        END IF;
        IF lim IS NOT NULL THEN
            IF lim !~ '^[0-9]{1,5}$' OR lim::int NOT BETWEEN 1 AND 10000 THEN
                PERFORM jd__fail(400, 'invalid_value', 'limit must be an integer from 1 to 10000 (conversations)', 'limit');
            END IF;
            filters := filters || jsonb_build_object('limit', lim::int);
        END IF;
    END IF;
    IF jd__transcript_type(fmt) IS NULL THEN
        PERFORM jd__fail(400, 'invalid_value', 'format must be jsonl, csv, text or html', 'format');
    END IF;
    IF jd__qbool_strict(q, 'redact') THEN
        filters := filters || '{"redact": true}';
    END IF;
    IF jd__qbool_strict(q, 'notes') THEN
        filters := filters || '{"notes": true}';
    END IF;
    out := jd_transcript(filters, fmt);
    IF fmt = 'html' THEN
        out := E'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Chat transcripts</title></head>\n<body>\n'
               || out || E'</body></html>\n';
    END IF;
    PERFORM jd__audit(c, 'export', 'conversation', cid::text, sid,
                      jsonb_build_object('format', fmt, 'filters', filters - 'site_id' - 'conversation'));
    RETURN jd__raw(200, jd__transcript_type(fmt), out);
END $$;

-- An agent account as the API shows it: never the password hash. online = a console connected
-- within the last 30 seconds.
CREATE FUNCTION jd__agent_json(p_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', a.id, 'site_id', a.site_id, 'email', a.email, 'name', a.name,
                              'role', a.role, 'disabled', a.disabled_at IS NOT NULL,
                              'disabled_at', a.disabled_at,
                              'online', EXISTS (SELECT 1 FROM agent_presence ap
                                                 WHERE ap.agent_id = a.id
                                                   AND ap.last_seen > now() - interval '30 seconds'),
                              'created_at', a.created_at, 'updated_at', a.updated_at)
      FROM agents a WHERE a.id = p_id
$$;

-- /sites/{id}/agents[/{aid}]: the site's chat agents (site by id or key). GET lists or shows;
-- POST {"email", "name", "role": "agent"|"admin", "password"} creates (bcrypt in
-- jd_agent_create); PATCH changes name, e-mail, role, password (ends every session) or
-- "disabled"; DELETE disables the account (it is kept: its messages and codes keep their author)
-- and ends its sessions. Account management needs an admin-scope token. Passwords never reach
-- audit_log or a response.
CREATE FUNCTION jd__h_agents(c jd_api_ctx, m text, p text[], q jsonb, b text)
RETURNS jd_api_resp LANGUAGE plpgsql AS $$
DECLARE
    sid bigint := coalesce(jd__id(p[1]), (SELECT s.id FROM sites s WHERE s.key = p[1]));
    aid bigint;
    body jsonb;
    detail jsonb;
BEGIN
    PERFORM jd__need_admin(c);
    sid := jd__site_of(c, 'site', coalesce(sid::text, p[1]));
    IF p[2] IS NULL THEN
        IF m = 'GET' THEN
            RETURN jd__list_rows('agents', 'x.site_id = $1', sid, 'x.id', 'jd__agent_json(x.id)', q);
        END IF;
        body := jd__check(jd__body_object(b), '{"email":"text","name":"text","role":"text","password":"text"}');
        PERFORM jd__need(body, 'email');
        PERFORM jd__need(body, 'password');
        aid := jd_agent_create(sid, body ->> 'email',
                               coalesce(nullif(btrim(body ->> 'name'), ''), split_part(btrim(body ->> 'email'), '@', 1)),
                               body ->> 'role', body ->> 'password');
        PERFORM jd__audit(c, 'create', 'agent', aid::text, sid, (body - 'password') || '{"password": "set"}');
        RETURN jd__ok(jd__agent_json(aid), 201);
    END IF;
    SELECT a.id INTO aid FROM agents a WHERE a.id = jd__id(p[2]) AND a.site_id = sid;
    IF aid IS NULL THEN
        RETURN jd__error(404, 'not_found', format('no agent with id %s in site %s', p[2], sid));
    END IF;
    IF m = 'GET' THEN
        RETURN jd__ok(jd__agent_json(aid));
    ELSIF m = 'DELETE' THEN
        PERFORM jd_agent_disable(aid);
        PERFORM jd__audit(c, 'disable', 'agent', aid::text, sid, '{}');
        RETURN jd__ok(jd__agent_json(aid));
    END IF;
    -- PATCH (fields a GET shows but that cannot be set are ignored)
    body := jd__check(jd__body_object(b) - 'site_id' - 'disabled_at' - 'online',
                      '{"email":"text","name":"text","role":"text","password":"text","disabled":"bool"}');
    IF body ? 'role' AND body ->> 'role' NOT IN ('admin', 'agent') THEN
        PERFORM jd__fail(400, 'invalid_value', 'role must be admin or agent', 'role');
    END IF;
    IF body ?| ARRAY['email', 'name', 'role'] THEN
        BEGIN
            UPDATE agents a
               SET email = coalesce(btrim(body ->> 'email'), a.email),
                   name = coalesce(btrim(body ->> 'name'), a.name),
                   role = coalesce(body ->> 'role', a.role),
                   updated_at = now()
             WHERE a.id = aid;
        EXCEPTION WHEN unique_violation THEN
            PERFORM jd__fail(409, 'conflict', 'an agent with this e-mail exists on this site', 'email');
        END;
    END IF;
    IF body ? 'password' THEN
        PERFORM jd_agent_set_password(aid, body ->> 'password');
    END IF;
    IF (body -> 'disabled') = 'true' THEN
        PERFORM jd_agent_disable(aid);
    ELSIF (body -> 'disabled') = 'false' THEN
        UPDATE agents a SET disabled_at = NULL, updated_at = now() WHERE a.id = aid AND a.disabled_at IS NOT NULL;
    END IF;
    detail := body - 'password';
    IF body ? 'password' THEN
        detail := detail || '{"password": "changed"}';
    END IF;
    PERFORM jd__audit(c, 'update', 'agent', aid::text, sid, detail);
    RETURN jd__ok(jd__agent_json(aid));
END $$;

INSERT INTO api_routes (template, methods, handler) VALUES
    ('/conversations',                   '{GET}',              'jd__h_conversations'),
    ('/conversations/{id}/transcript',   '{GET}',              'jd__h_conversations'),
    ('/sites/{id}/agents',               '{GET,POST}',         'jd__h_agents'),
    ('/sites/{id}/agents/{aid}',         '{GET,PATCH,DELETE}', 'jd__h_agents');
