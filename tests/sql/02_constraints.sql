-- pgTAP: uniqueness, CHECK constraints and foreign keys reject bad rows.
BEGIN;
SELECT no_plan();

-- Fixture: one site with a map, persona, stage, touchpoint, survey, question, respondent, session.
INSERT INTO sites (key, name, allowed_origins) VALUES ('pgtap-site-0001', 'pgTAP', '{https://t.example}');
INSERT INTO maps (site_id, slug, name) SELECT id, 'm', 'Map' FROM sites WHERE key = 'pgtap-site-0001';
CREATE TEMP TABLE fx AS
SELECT s.id AS site_id, m.id AS map_id FROM sites s JOIN maps m ON m.site_id = s.id
 WHERE s.key = 'pgtap-site-0001';
INSERT INTO personas (map_id, slug, name, age_min, age_max) SELECT map_id, 'p', 'P', 20, 30 FROM fx;
INSERT INTO stages (map_id, slug, name) SELECT map_id, 'st', 'Stage' FROM fx;
INSERT INTO touchpoints (map_id, slug, name) SELECT map_id, 'tp', 'TP' FROM fx;
INSERT INTO surveys (map_id, slug, title, status) SELECT map_id, 'sv', 'Survey', 'live' FROM fx;
INSERT INTO questions (survey_id, key, kind, prompt)
SELECT id, 'q', 'emotion', 'How?' FROM surveys WHERE slug = 'sv' AND map_id = (SELECT map_id FROM fx);
INSERT INTO respondents (site_id, id) SELECT site_id, '00000000-0000-4000-8000-000000000001' FROM fx;
INSERT INTO sessions (id, site_id, respondent_id, consent_mode)
SELECT '00000000-0000-4000-8000-0000000000aa', site_id, '00000000-0000-4000-8000-000000000001', 'none-required' FROM fx;

CREATE FUNCTION pg_temp.answer(client text, extra text DEFAULT '') RETURNS text LANGUAGE sql AS $$
  -- extra is 'column=SQL expression' (the expression may contain '=' and may use fx.*)
  SELECT format('INSERT INTO answers (site_id, map_id, client_id%s) SELECT site_id, map_id, %L%s FROM fx',
                CASE WHEN extra = '' THEN '' ELSE ', ' || split_part(extra, '=', 1) END,
                client,
                CASE WHEN extra = '' THEN '' ELSE ', ' || substr(extra, position('=' in extra) + 1) END)
$$;

-- unique (site_id, client_id)
SELECT lives_ok(pg_temp.answer('11111111-1111-4111-8111-111111111111', 'emotion=4'), 'an answer stores');
SELECT throws_ok(pg_temp.answer('11111111-1111-4111-8111-111111111111', 'emotion=3'), '23505', NULL,
                 'a second answer with the same (site_id, client_id) is rejected');
SELECT lives_ok($$INSERT INTO touch_events (site_id, client_id, session_id, respondent_id, kind)
                  SELECT site_id, '22222222-2222-4222-8222-222222222222', '00000000-0000-4000-8000-0000000000aa',
                         '00000000-0000-4000-8000-000000000001', 'pageview' FROM fx$$, 'a touch stores');
SELECT throws_ok($$INSERT INTO touch_events (site_id, client_id, session_id, respondent_id, kind)
                  SELECT site_id, '22222222-2222-4222-8222-222222222222', '00000000-0000-4000-8000-0000000000aa',
                         '00000000-0000-4000-8000-000000000001', 'event' FROM fx$$, '23505', NULL,
                 'a second touch with the same (site_id, client_id) is rejected');
SELECT throws_ok($$INSERT INTO sites (key, name) VALUES ('pgtap-site-0001', 'again')$$, '23505', NULL,
                 'site keys are unique');
SELECT throws_ok($$INSERT INTO respondents (site_id, id) SELECT site_id, '00000000-0000-4000-8000-000000000001' FROM fx$$,
                 '23505', NULL, 'respondents are unique per site');

-- CHECK constraints
SELECT throws_ok(pg_temp.answer('33333333-3333-4333-8333-000000000000', 'emotion=0'), '23514', NULL, 'emotion 0 is rejected');
SELECT throws_ok(pg_temp.answer('33333333-3333-4333-8333-000000000006', 'emotion=6'), '23514', NULL, 'emotion 6 is rejected');
SELECT lives_ok(pg_temp.answer('33333333-3333-4333-8333-000000000001', 'emotion=1'), 'emotion 1 is accepted');
SELECT lives_ok(pg_temp.answer('33333333-3333-4333-8333-000000000005', 'emotion=5'), 'emotion 5 is accepted');
SELECT throws_ok(pg_temp.answer('44444444-4444-4444-8444-000000000011', 'score=11'), '23514', NULL, 'NPS 11 is rejected');
SELECT throws_ok(pg_temp.answer('44444444-4444-4444-8444-00000000000f', 'score=-1'), '23514', NULL, 'score -1 is rejected');
SELECT lives_ok(pg_temp.answer('44444444-4444-4444-8444-000000000000', 'score=0'), 'NPS 0 is accepted');
SELECT lives_ok(pg_temp.answer('44444444-4444-4444-8444-000000000010', 'score=10'), 'NPS 10 is accepted');
SELECT throws_ok(pg_temp.answer('55555555-5555-4555-8555-000000000001', 'source=''survey-ish'''), '23514', NULL, 'unknown answer source is rejected');
SELECT throws_ok(pg_temp.answer('55555555-5555-4555-8555-000000000002', 'thought=repeat(''x'', 4001)'), '23514', NULL, 'thought over 4000 characters is rejected');
SELECT lives_ok(pg_temp.answer('55555555-5555-4555-8555-000000000003', 'thought=repeat(''é'', 4000)'), 'thought of 4000 characters is accepted');
SELECT throws_ok(pg_temp.answer('55555555-5555-4555-8555-000000000004', 'action=repeat(''x'', 4001)'), '23514', NULL, 'action over 4000 characters is rejected');

SELECT throws_ok($$INSERT INTO sites (key, name, consent_mode) VALUES ('pgtap-site-0002', 'x', 'whenever')$$,
                 '23514', NULL, 'a bad consent_mode is rejected');
SELECT lives_ok($$INSERT INTO sites (key, name, consent_mode) VALUES ('pgtap-site-0003', 'x', 'cookieless')$$,
                 'consent_mode cookieless is accepted');
SELECT throws_ok($$INSERT INTO sites (key, name) VALUES ('short', 'x')$$, '23514', NULL, 'a site key under 8 characters is rejected');
SELECT throws_ok($$INSERT INTO sites (key, name) VALUES ('has space key', 'x')$$, '23514', NULL, 'a site key with a space is rejected');
SELECT throws_ok($$INSERT INTO sites (key, name, redact) VALUES ('pgtap-site-0004', 'x', 'sometimes')$$, '23514', NULL, 'a bad redact mode is rejected');
SELECT throws_ok($$INSERT INTO sites (key, name, retention_days) VALUES ('pgtap-site-0005', 'x', 0)$$, '23514', NULL, 'retention_days 0 is rejected');
SELECT throws_ok($$INSERT INTO personas (map_id, slug, name, age_min, age_max) SELECT map_id, 'old', 'Old', 50, 40 FROM fx$$,
                 '23514', NULL, 'age_min > age_max is rejected');
SELECT lives_ok($$INSERT INTO personas (map_id, slug, name, age_min, age_max) SELECT map_id, 'same', 'Same', 40, 40 FROM fx$$,
                 'age_min = age_max is accepted');
SELECT throws_ok($$INSERT INTO personas (map_id, slug, name, age_min) SELECT map_id, 'ancient', 'A', 131 FROM fx$$,
                 '23514', NULL, 'age over 130 is rejected');
SELECT throws_ok($$INSERT INTO stages (map_id, slug, name) SELECT map_id, 'Bad Slug', 'x' FROM fx$$, '23514', NULL, 'a slug with capitals and spaces is rejected');
SELECT throws_ok($$INSERT INTO questions (survey_id, key, kind, prompt) SELECT id, 'q2', 'slider', 'x' FROM surveys WHERE slug = 'sv'$$,
                 '23514', NULL, 'an unknown question kind is rejected');
SELECT throws_ok($$INSERT INTO surveys (map_id, slug, title, status) SELECT map_id, 'sv2', 'x', 'paused' FROM fx$$,
                 '23514', NULL, 'an unknown survey status is rejected');
SELECT throws_ok($$INSERT INTO stage_resources (stage_id, kind, name) SELECT id, 'magic', 'x' FROM stages WHERE slug = 'st'$$,
                 '23514', NULL, 'an unknown resource kind is rejected');
SELECT throws_ok($$INSERT INTO touch_events (site_id, client_id, session_id, respondent_id, kind)
                  SELECT site_id, '66666666-6666-4666-8666-666666666666', '00000000-0000-4000-8000-0000000000aa',
                         '00000000-0000-4000-8000-000000000001', 'click' FROM fx$$, '23514', NULL, 'an unknown touch kind is rejected');
SELECT throws_ok($$INSERT INTO maps (site_id, slug, name, min_evidence) SELECT site_id, 'm2', 'x', 0 FROM fx$$,
                 '23514', NULL, 'min_evidence 0 is rejected');

-- One live version per question key.
SELECT throws_ok($$INSERT INTO questions (survey_id, key, version, kind, prompt) SELECT id, 'q', 2, 'emotion', 'How now?' FROM surveys WHERE slug = 'sv'$$,
                 '23505', NULL, 'a second live version of a question key is rejected');
SELECT lives_ok($$UPDATE questions SET retired_at = now() WHERE key = 'q';
                  INSERT INTO questions (survey_id, key, version, kind, prompt) SELECT id, 'q', 2, 'emotion', 'How now?' FROM surveys WHERE slug = 'sv'$$,
                 'retiring the old version allows a new one');

-- Foreign keys
SELECT fk_ok('answers', 'site_id', 'sites', 'id');
SELECT fk_ok('answers', 'map_id', 'maps', 'id');
-- survey, question, persona, stage and touchpoint are validated by the daemon and unlinked by
-- parent-side triggers instead of per-row foreign keys (sql/004_answers_hot_path.sql).
SELECT trigger_is('personas', 'answers_unlink_persona', 'jd_answers_unlink');
SELECT trigger_is('stages', 'answers_unlink_stage', 'jd_answers_unlink');
SELECT trigger_is('touchpoints', 'answers_unlink_touchpoint', 'jd_answers_unlink');
SELECT trigger_is('questions', 'answers_unlink_question', 'jd_answers_unlink');
SELECT trigger_is('surveys', 'answers_unlink_survey', 'jd_answers_unlink');
SELECT fk_ok('maps', 'site_id', 'sites', 'id');
SELECT fk_ok('questions', 'survey_id', 'surveys', 'id');
SELECT fk_ok('touch_events', 'session_id', 'sessions', 'id');
SELECT fk_ok('sessions', ARRAY['site_id', 'respondent_id'], 'respondents', ARRAY['site_id', 'id']);

SELECT throws_ok($$INSERT INTO answers (site_id, map_id, client_id) SELECT 999999999, map_id, '77777777-7777-4777-8777-000000000001' FROM fx$$,
                 '23503', NULL, 'an answer for a missing site is rejected');
SELECT throws_ok($$INSERT INTO answers (site_id, map_id, client_id) SELECT site_id, 999999999, '77777777-7777-4777-8777-000000000002' FROM fx$$,
                 '23503', NULL, 'an answer for a missing map is rejected');
-- A persona or question id is checked by the daemon against its catalog before the row is queued
-- (tests/unit/test_proto.c: unknown_persona, unknown_question), not per row here; see 004.
SELECT throws_ok($$INSERT INTO sessions (id, site_id, respondent_id, consent_mode)
                  SELECT '00000000-0000-4000-8000-0000000000bb', site_id, '00000000-0000-4000-8000-00000000ffff', 'none-required' FROM fx$$,
                 '23503', NULL, 'a session for an unknown respondent is rejected');
SELECT throws_ok($$INSERT INTO touch_events (site_id, client_id, session_id, respondent_id, kind)
                  SELECT site_id, '88888888-8888-4888-8888-888888888888', '00000000-0000-4000-8000-0000000000cc',
                         '00000000-0000-4000-8000-000000000001', 'pageview' FROM fx$$, '23503', NULL, 'a touch for an unknown session is rejected');

-- ON DELETE behaviour: deleting a persona keeps the answer with persona_id NULL; deleting the site
-- removes everything of it.
SELECT lives_ok(pg_temp.answer('99999999-9999-4999-8999-000000000001', 'persona_id=(SELECT id FROM personas WHERE slug = ''p'' AND map_id = fx.map_id)'), 'answer with persona');
DELETE FROM personas WHERE slug = 'p' AND map_id = (SELECT map_id FROM fx);
SELECT is((SELECT persona_id FROM answers WHERE client_id = '99999999-9999-4999-8999-000000000001'), NULL::bigint,
          'deleting a persona sets answers.persona_id to NULL');
-- The same for stage, touchpoint, question and survey (parent-side triggers since 004).
INSERT INTO stages (map_id, slug, name) SELECT map_id, 'st2', 'Stage 2' FROM fx;
INSERT INTO touchpoints (map_id, slug, name) SELECT map_id, 'tp2', 'TP 2' FROM fx;
INSERT INTO surveys (map_id, slug, title, status) SELECT map_id, 'sv3', 'Survey 3', 'live' FROM fx;
INSERT INTO questions (survey_id, key, kind, prompt)
SELECT id, 'q3', 'nps', 'Recommend?' FROM surveys WHERE slug = 'sv3' AND map_id = (SELECT map_id FROM fx);
INSERT INTO answers (site_id, map_id, client_id, stage_id, touchpoint_id, survey_id, question_id, score)
SELECT fx.site_id, fx.map_id, '99999999-9999-4999-8999-000000000002',
       (SELECT id FROM stages WHERE slug = 'st2' AND map_id = fx.map_id),
       (SELECT id FROM touchpoints WHERE slug = 'tp2' AND map_id = fx.map_id),
       (SELECT id FROM surveys WHERE slug = 'sv3' AND map_id = fx.map_id),
       (SELECT q.id FROM questions q JOIN surveys s ON s.id = q.survey_id WHERE s.slug = 'sv3' AND s.map_id = fx.map_id),
       7
  FROM fx;
CREATE TEMP VIEW a2 AS SELECT * FROM answers WHERE client_id = '99999999-9999-4999-8999-000000000002';
SELECT isnt((SELECT question_id FROM a2), NULL::bigint, 'fixture answer links a question');
DELETE FROM questions WHERE key = 'q3';
SELECT is((SELECT question_id FROM a2), NULL::bigint, 'deleting a question sets answers.question_id to NULL');
DELETE FROM surveys WHERE slug = 'sv3';
SELECT is((SELECT survey_id FROM a2), NULL::bigint, 'deleting a survey sets answers.survey_id to NULL');
DELETE FROM stages WHERE slug = 'st2';
SELECT is((SELECT stage_id FROM a2), NULL::bigint, 'deleting a stage sets answers.stage_id to NULL');
DELETE FROM touchpoints WHERE slug = 'tp2';
SELECT is((SELECT touchpoint_id FROM a2), NULL::bigint, 'deleting a touchpoint sets answers.touchpoint_id to NULL');
SELECT is((SELECT score FROM a2), 7::smallint, 'the answer itself survives its parents');
DELETE FROM sites WHERE key = 'pgtap-site-0001';
SELECT is((SELECT count(*)::int FROM answers WHERE site_id = (SELECT site_id FROM fx)), 0, 'deleting a site deletes its answers');
SELECT is((SELECT count(*)::int FROM sessions WHERE site_id = (SELECT site_id FROM fx)), 0, 'deleting a site deletes its sessions');
SELECT is((SELECT count(*)::int FROM maps WHERE site_id = (SELECT site_id FROM fx)), 0, 'deleting a site deletes its maps');

SELECT * FROM finish();
ROLLBACK;
