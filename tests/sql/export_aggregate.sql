-- pgTAP: jd_map_export against the hand-computed fixture (tests/export/fixture.sql).
-- Expected figures, worked out by hand from the fixture's rows:
--   Persona A x Look x Website: answers 1-6 -> n 6, respondents r1..r5 = 5, emotions 4,5,3,2:
--     mean 3.5, sd sqrt(5/3) = 1.2910, t(0.975, 3) = 3.182446 -> CI 3.5 -+ 2.0543 = [1.4457, 5.5543],
--     distribution [0,1,1,1,1]; obstacles: price in answers 4 and 5, shipping in 5, of 2 obstacle
--     answers -> price 2 (1.0), shipping 1 (0.5); action "compared prices" x2; quotes: only
--     answer 1 (answer 3's session has no consent, answer 6's respondent is erased).
--   Persona A x Look x Mail: n 1 < min_evidence 3 -> thin, sd and CI null.
--   Persona B x Look x Website: emotions 1,2 -> mean 1.5, sd 0.7071, t(1) = 12.706205 ->
--     CI [-4.8531, 7.8531], thin (n 2).
--   All personas x Look x Website: answers 1-6, 8, 9, 15 -> n 9, respondents 8,
--     emotions 4,5,3,2,1,2,3 -> mean 2.8571, sd 1.3452, t(6) = 2.446912 -> CI [1.6131, 4.1012].
--   Stage rollup A x Look: answers 1-7 -> n 7, emotions 4,5,3,2,2 -> mean 3.2, sd 1.3038.
--   Purchase: goal answers 10 (yes), 11 (no), 12 (yes) -> rate 2/3.
--   Sessions: S1..S8 all reach Look; Purchase S1, S2, S6; Review S1 -> shares 1, .375, .125;
--     drop-off Look->Purchase 1 - 3/8 = .625, Purchase->Review 1 - 1/3 = .6667.
--   Touches before purchase: r1 converts at 10:60 with 3 earlier touches, r6 at 11:02 with 1 ->
--     2 converted, median 2, distribution {1: 1, 3: 1}.
BEGIN;
SELECT plan(52);
\i tests/export/fixture.sql

CREATE TEMP TABLE doc AS SELECT jd_map_export(901, '{}') AS d;
CREATE TEMP TABLE cell AS SELECT c ->> 'id' AS id, c FROM doc, jsonb_array_elements(d -> 'cells') c;
CREATE FUNCTION pg_temp.c(p_id text, p_path text[]) RETURNS jsonb LANGUAGE sql AS
    $$ SELECT c #> p_path FROM cell WHERE id = p_id $$;

SELECT is((SELECT d ->> 'format' FROM doc), 'journeyd.map/1', 'format is versioned');
SELECT is((SELECT jsonb_array_length(d -> 'personas') FROM doc), 2, 'two personas');
SELECT is((SELECT count(*) FROM cell), 21::bigint,
          'cells: (2 personas + all) x (4 allowed stage/touchpoint pairs + 3 stage rollups)');

-- Persona A x Look x Website
SELECT is(pg_temp.c('p911-s921-t931', '{n}'), '6', 'A/look/web: n answers');
SELECT is(pg_temp.c('p911-s921-t931', '{respondents}'), '5', 'A/look/web: distinct respondents');
SELECT is(pg_temp.c('p911-s921-t931', '{emotion,n}'), '4', 'A/look/web: answers with an emotion');
SELECT is((pg_temp.c('p911-s921-t931', '{emotion,mean}'))::numeric, 3.5, 'A/look/web: mean');
SELECT is((pg_temp.c('p911-s921-t931', '{emotion,sd}'))::numeric, 1.2910, 'A/look/web: sd');
SELECT is((pg_temp.c('p911-s921-t931', '{emotion,ci95,0}'))::numeric, 1.4457, 'A/look/web: CI low (t, df 3)');
SELECT is((pg_temp.c('p911-s921-t931', '{emotion,ci95,1}'))::numeric, 5.5543, 'A/look/web: CI high');
SELECT is(pg_temp.c('p911-s921-t931', '{emotion,distribution}'), '[0,1,1,1,1]', 'A/look/web: distribution');
SELECT is(pg_temp.c('p911-s921-t931', '{thin}'), 'false', 'A/look/web: not thin (6 >= 3)');
SELECT is(pg_temp.c('p911-s921-t931', '{obstacles}'),
          '[{"id":941,"slug":"price","name":"Price","count":2,"share":1.0},
            {"id":942,"slug":"ship","name":"Shipping","count":1,"share":0.5}]',
          'A/look/web: top obstacles with count and share');
SELECT is(pg_temp.c('p911-s921-t931', '{actions}'), '[{"text":"compared prices","count":2}]', 'A/look/web: top actions');
SELECT is((SELECT jsonb_agg(q -> 'evidence') FROM jsonb_array_elements(pg_temp.c('p911-s921-t931', '{quotes}')) q),
          '["answer:9001"]', 'A/look/web: the one quotable thought, with its evidence id');
SELECT ok(NOT EXISTS (SELECT 1 FROM doc WHERE d::text LIKE '%ERASED quote%'), 'an erased respondent''s quote never appears');
SELECT ok(NOT EXISTS (SELECT 1 FROM doc WHERE d::text LIKE '%NO-CONSENT%'), 'a quote from a session without consent on an opt-in site never appears');
SELECT is(pg_temp.c('p922-s922-t931', '{n}'), NULL, 'no cell for an unknown persona');
SELECT is((SELECT jsonb_agg(q -> 'evidence') FROM jsonb_array_elements(pg_temp.c('p911-s922-t931', '{quotes}')) q),
          '["answer:9013"]', 'interview quotes (no session) are kept');

-- Thin cells
SELECT is(pg_temp.c('p911-s921-t932', '{thin}'), 'true', 'A/look/mail: thin (1 < 3)');
SELECT is(pg_temp.c('p911-s921-t932', '{emotion,sd}'), 'null', 'A/look/mail: no sd from one answer');
SELECT is(pg_temp.c('p911-s921-t932', '{emotion,ci95}'), 'null', 'A/look/mail: no CI from one answer');
SELECT is(pg_temp.c('p912-s921-t932', '{n}'), '0', 'B/look/mail: an allowed cell without evidence is present with n 0');

-- Persona B and the all-personas view
SELECT is((pg_temp.c('p912-s921-t931', '{emotion,ci95}')), '[-4.8531, 7.8531]', 'B/look/web: CI with t(1)');
SELECT is(pg_temp.c('p912-s921-t931', '{thin}'), 'true', 'B/look/web: thin (2 < 3)');
SELECT is(pg_temp.c('pall-s921-t931', '{n}'), '9', 'all/look/web: n includes answers without a persona');
SELECT is(pg_temp.c('pall-s921-t931', '{respondents}'), '8', 'all/look/web: respondents');
SELECT is((pg_temp.c('pall-s921-t931', '{emotion,mean}'))::numeric, 2.8571, 'all/look/web: mean');
SELECT is((pg_temp.c('pall-s921-t931', '{emotion,ci95}')), '[1.6131, 4.1012]', 'all/look/web: CI with t(6)');

-- Stage rollups
SELECT is(pg_temp.c('p911-s921', '{n}'), '7', 'A/look rollup: n');
SELECT is((pg_temp.c('p911-s921', '{emotion,sd}'))::numeric, 1.3038, 'A/look rollup: sd');
SELECT is(pg_temp.c('p911-s922', '{goal}'), '{"n":2,"reached":1,"rate":0.5}', 'A/purchase rollup: goal');

-- Stage metrics
CREATE TEMP TABLE sm AS SELECT (s ->> 'stage_id')::bigint AS id, s FROM doc, jsonb_array_elements(d #> '{stage_metrics,stages}') s;
SELECT is((SELECT d #> '{stage_metrics,sessions}' FROM doc), '8', 'eight sessions reached the map');
SELECT is((SELECT s -> 'sessions_reached' FROM sm WHERE id = 922), '3', 'purchase reached by 3 sessions');
SELECT is((SELECT (s ->> 'share_reached')::numeric FROM sm WHERE id = 922), 0.375, 'purchase share');
SELECT is((SELECT (s ->> 'drop_off')::numeric FROM sm WHERE id = 921), 0.625, 'drop-off look -> purchase');
SELECT is((SELECT (s ->> 'drop_off')::numeric FROM sm WHERE id = 922), 0.6667, 'drop-off purchase -> review');
SELECT is((SELECT s -> 'drop_off' FROM sm WHERE id = 923), 'null', 'no drop-off after the last stage');
SELECT is((SELECT (s #>> '{goal,rate}')::numeric FROM sm WHERE id = 922), 0.6667, 'purchase goal-reached rate');

-- Touches before purchase
SELECT is((SELECT d #> '{conversion,converted}' FROM doc), '2', 'two converted respondents');
SELECT is((SELECT (d #>> '{conversion,touches_median}')::numeric FROM doc), 2.0, 'median touches before purchase');
SELECT is((SELECT d #> '{conversion,distribution}' FROM doc),
          '[{"touches":1,"respondents":1},{"touches":3,"respondents":1}]', 'touches distribution');

-- Resources
SELECT is((SELECT jsonb_agg(r -> 'name') FROM doc, jsonb_array_elements(d -> 'resources') r), '["CMS","Payments"]',
          'resources lane in stage order');

-- Filters
CREATE TEMP TABLE docb AS SELECT jd_map_export(901, '{"persona":"pb"}') AS d;
SELECT is((SELECT jsonb_array_length(d -> 'personas') FROM docb), 1, 'persona filter keeps one persona');
SELECT is((SELECT c -> 'n' FROM docb, jsonb_array_elements(d -> 'cells') c WHERE c ->> 'id' = 'pall-s921-t931'),
          '2', 'persona filter: the all view holds that persona only');
SELECT is((SELECT d #> '{stage_metrics,sessions}' FROM docb), '2', 'persona filter: sessions of that persona');
SELECT is((SELECT c -> 'n' FROM jsonb_array_elements(jd_map_export(901, '{"from":"2026-01-10T11:00:00Z"}') -> 'cells') c
            WHERE c ->> 'id' = 'pall-s921'), '0', 'time window: nothing at look after 11:00');
SELECT is((SELECT c -> 'n' FROM jsonb_array_elements(jd_map_export(901, '{"source":"interview"}') -> 'cells') c
            WHERE c ->> 'id' = 'pall-s922'), '1', 'source filter: interview only');
SELECT is((SELECT c -> 'thin' FROM jsonb_array_elements(jd_map_export(901, '{"min_evidence":11}') -> 'cells') c
            WHERE c ->> 'id' = 'pall-s921'), 'true', 'min_evidence 11 makes the 10-answer rollup thin');
SELECT throws_ok($$SELECT jd_map_export(901, '{"persona":"nobody"}')$$, 'JD404', NULL, 'unknown persona is a 404');
SELECT throws_ok($$SELECT jd_map_export(901, '{"sauce":"survey"}')$$, 'JD400', NULL, 'unknown filter is a 400');
-- Distinct respondents: with more personas x touchpoints than a 63-bit mask holds, the export
-- counts them with count(DISTINCT); both ways must agree on every cell.
INSERT INTO touchpoints (map_id, slug, name, position)
SELECT 901, 'extra-' || i, 'Extra ' || i, 100 + i FROM generate_series(1, 40) i;
SELECT is((SELECT jsonb_object_agg(c ->> 'id', c -> 'respondents')
             FROM jsonb_array_elements(jd_map_export(901, '{}') -> 'cells') c),
          (SELECT jsonb_object_agg(id, c -> 'respondents') FROM cell),
          'respondents: the count(DISTINCT) fallback agrees with the bit-mask count');
SELECT * FROM finish();
ROLLBACK;
