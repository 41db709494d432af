-- pgTAP: the indexes that aggregation, idempotent inserts and session lookups rely on.
BEGIN;
SELECT no_plan();

SELECT has_index('answers', 'answers_cell', ARRAY['map_id', 'persona_id', 'stage_id', 'touchpoint_id'],
                 'answers_cell serves per-cell aggregation (map, persona, stage, touchpoint)');
SELECT has_index('answers', 'answers_time', ARRAY['map_id', 'created_at'], 'answers_time serves time series per map');
SELECT has_index('answers', 'answers_respondent', ARRAY['site_id', 'respondent_id'], 'answers_respondent serves erasure and export');
SELECT has_index('sessions', 'sessions_respondent', ARRAY['site_id', 'respondent_id']);
SELECT has_index('sessions', 'sessions_started', ARRAY['site_id', 'started_at']);
SELECT has_index('touch_events', 'touch_events_session', ARRAY['session_id', 'created_at']);
SELECT has_index('questions', 'questions_one_live_version', ARRAY['survey_id', 'key']);
SELECT index_is_unique('questions', 'questions_one_live_version');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = 'questions_one_live_version'::regclass),
          '(retired_at IS NULL)', 'questions_one_live_version is partial on retired_at IS NULL');

-- The (site_id, client_id) uniqueness that makes resends idempotent is backed by a unique index
-- whose leading columns are exactly those.
SELECT ok(EXISTS (SELECT 1 FROM pg_index i
                   WHERE i.indrelid = t::regclass AND i.indisunique
                     AND (SELECT array_agg(a.attname ORDER BY k.ord)
                            FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) = ARRAY['site_id', 'client_id']::name[]),
          t || ' has a unique index on (site_id, client_id)')
  FROM unnest(ARRAY['answers', 'touch_events']) AS t;

-- The planner uses answers_cell for a per-cell aggregate on a non-trivial table.
CREATE TEMP TABLE plan_out (line text);
DO $$
DECLARE s bigint; m bigint; r text;
BEGIN
  INSERT INTO sites (key, name) VALUES ('pgtap-index-0001', 'idx') RETURNING id INTO s;
  INSERT INTO maps (site_id, slug, name) VALUES (s, 'm', 'm') RETURNING id INTO m;
  INSERT INTO answers (site_id, map_id, client_id, emotion)
  SELECT s, m, gen_random_uuid(), 1 + g % 5 FROM generate_series(1, 20000) g;
  INSERT INTO maps (site_id, slug, name) VALUES (s, 'm2', 'm2') RETURNING id INTO m;
  INSERT INTO answers (site_id, map_id, client_id, emotion) VALUES (s, m, gen_random_uuid(), 3);
  ANALYZE answers;
  FOR r IN EXECUTE format('EXPLAIN SELECT persona_id, stage_id, touchpoint_id, avg(emotion) FROM answers WHERE map_id = %s GROUP BY 1, 2, 3', m) LOOP
    INSERT INTO plan_out VALUES (r);
  END LOOP;
END $$;
SELECT ok(EXISTS (SELECT 1 FROM plan_out WHERE line ~ 'answers_cell|answers_time'),
          'a per-cell aggregate for one map uses an index: ' || (SELECT string_agg(line, ' / ') FROM plan_out));

SELECT * FROM finish();
ROLLBACK;
