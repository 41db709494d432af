-- Hand-computed fixture for the map export tests (tests/sql/export_*.sql and
-- tests/integration/export.test.mjs): an opt-in site with one map, two personas, three stages,
-- two touchpoints, eight respondents (r5 erased, r3 without consent) and a handful of answers and
-- touch events whose aggregates are worked out by hand in tests/sql/export_aggregate.sql.
-- Ids are fixed (9xxx) so the expectations can name them; run it once per fresh database.
INSERT INTO sites (id, key, name, consent_mode) VALUES (901, 'export-fixture-01', 'Fixture shop', 'opt-in');
INSERT INTO maps (id, site_id, slug, name, goal, min_evidence)
VALUES (901, 901, 'fx', 'Fixture map: "quotes" & <tags>', 'Buy', 3);
INSERT INTO personas (id, map_id, slug, name, position) VALUES
    (911, 901, 'pa', 'Persona A', 1), (912, 901, 'pb', 'Persona B', 2);
INSERT INTO stages (id, map_id, slug, name, position) VALUES
    (921, 901, 'look', 'Look', 1), (922, 901, 'purchase', 'Purchase', 2), (923, 901, 'review', 'Review', 3);
INSERT INTO touchpoints (id, map_id, slug, name, position) VALUES
    (931, 901, 'web', 'Website', 1), (932, 901, 'mail', 'Mail', 2);
INSERT INTO touchpoint_stages (touchpoint_id, stage_id) VALUES
    (931, 921), (931, 922), (931, 923), (932, 921);
INSERT INTO obstacles (id, map_id, slug, name) VALUES (941, 901, 'price', 'Price'), (942, 901, 'ship', 'Shipping');
INSERT INTO stage_resources (stage_id, kind, name, owner, position) VALUES
    (921, 'technology', 'CMS', 'Web team', 1), (922, 'department', 'Payments', 'Finance', 1);

INSERT INTO respondents (site_id, id, erased_at)
SELECT 901, ('00000000-0000-4000-8000-00000000000' || i)::uuid, CASE WHEN i = 5 THEN now() END
FROM generate_series(1, 8) i;
-- Session Sn belongs to respondent rn; S3 gave no consent on this opt-in site.
INSERT INTO sessions (id, site_id, respondent_id, consent_mode, consent, persona_id, started_at)
SELECT ('10000000-0000-4000-8000-00000000000' || i)::uuid, 901,
       ('00000000-0000-4000-8000-00000000000' || i)::uuid, 'opt-in', i <> 3,
       CASE WHEN i IN (1, 2, 3, 4, 5) THEN 911 WHEN i IN (6, 7) THEN 912 END,
       '2026-01-10 09:00Z'
FROM generate_series(1, 8) i;

CREATE TEMP TABLE fx_answers (n int, persona bigint, stage bigint, tp bigint, r int, emotion int,
    goal boolean, obstacles bigint[], thought text, action text, source text, minute int);
INSERT INTO fx_answers VALUES
    (1,  911, 921, 931, 1, 4,    NULL,  '{}',        'The homepage made it easy to compare', NULL, 'survey', 1),
    (2,  911, 921, 931, 2, 5,    NULL,  '{}',        NULL, NULL, 'survey', 2),
    (3,  911, 921, 931, 3, 3,    NULL,  '{}',        'NO-CONSENT quote must not appear', NULL, 'survey', 3),
    (4,  911, 921, 931, 4, 2,    NULL,  '{941}',     NULL, 'compared prices', 'survey', 4),
    (5,  911, 921, 931, 1, NULL, NULL,  '{941,942}', NULL, 'compared prices', 'survey', 5),
    (6,  911, 921, 931, 5, NULL, NULL,  '{}',        'ERASED quote must not appear', NULL, 'survey', 6),
    (7,  911, 921, 932, 1, 2,    NULL,  '{}',        NULL, NULL, 'survey', 7),
    (8,  912, 921, 931, 6, 1,    NULL,  '{942}',     NULL, NULL, 'survey', 8),
    (9,  912, 921, 931, 7, 2,    NULL,  '{}',        'B likes <img src=x onerror=alert(1)>', NULL, 'survey', 9),
    (10, 911, 922, 931, 1, 5,    true,  '{}',        NULL, NULL, 'survey', 60),
    (11, 911, 922, 931, 2, 2,    false, '{942}',     NULL, NULL, 'survey', 61),
    (12, 912, 922, 931, 6, NULL, true,  '{}',        NULL, NULL, 'survey', 62),
    (13, 911, 922, 931, NULL, 3, NULL,  '{}',        'Interview quote survives', NULL, 'interview', 63),
    (14, 911, 923, 931, 1, 5,    NULL,  '{}',        NULL, NULL, 'survey', 120),
    (15, NULL, 921, 931, 8, 3,   NULL,  '{}',        NULL, NULL, 'survey', 10);
INSERT INTO answers (id, site_id, map_id, client_id, source, session_id, respondent_id, persona_id,
                     stage_id, touchpoint_id, emotion, goal_reached, obstacle_ids, thought, action,
                     created_at)
SELECT 9000 + n, 901, 901, md5('fx-answer-' || n)::uuid, source,
       CASE WHEN r IS NOT NULL THEN ('10000000-0000-4000-8000-00000000000' || r)::uuid END,
       CASE WHEN r IS NOT NULL THEN ('00000000-0000-4000-8000-00000000000' || r)::uuid END,
       persona, stage, tp, emotion, goal, obstacles, thought, action,
       timestamptz '2026-01-10 10:00Z' + make_interval(mins => minute)
FROM fx_answers;

-- Touch events: (session/respondent, stage, minute). r1 has 3 touches before buying at minute 60
-- and one after; r6 has 1 before buying at minute 62.
INSERT INTO touch_events (site_id, client_id, session_id, respondent_id, kind, stage_id, created_at)
SELECT 901, md5('fx-touch-' || x.k)::uuid, ('10000000-0000-4000-8000-00000000000' || x.r)::uuid,
       ('00000000-0000-4000-8000-00000000000' || x.r)::uuid, 'pageview', x.stage,
       timestamptz '2026-01-10 10:00Z' + make_interval(mins => x.minute)
FROM (VALUES (1, 1, 921, -30), (2, 1, 921, -20), (3, 1, 922, 30), (4, 1, 923, 100),
             (5, 2, 921, -10), (6, 2, 922, 50),
             (7, 3, 921, -5), (8, 4, 921, -5),
             (9, 6, 921, 0), (10, 6, 922, 70),
             (11, 7, 921, 0), (12, 8, 921, 0)) AS x(k, r, stage, minute);
