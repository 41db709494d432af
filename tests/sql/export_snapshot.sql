-- pgTAP: map snapshots (numbered versions) and the diff between two of them, on the fixture.
-- Version 1 is the fixture as is; version 2 adds three answers to Persona B x Look x Website
-- (emotions 5, 5, 4, one reporting "price"), so B/look/web goes from emotions 1,2 (mean 1.5,
-- sd 0.7071) to 1,2,5,5,4 (mean 3.4, sd 1.8166): Welch t = 1.9 / sqrt(0.5/2 + 3.3/5) = 1.9918,
-- df = 0.91^2 / (0.25^2/1 + 0.66^2/4) = 4.8314, two-sided p = 0.105 -> not significant; price is new
-- and shipping (reported by 1 of the 2 obstacle answers before) is still there.
BEGIN;
SELECT plan(14);
\i tests/export/fixture.sql

SELECT is((jd_map_snapshot(901, '{}') ->> 'version')::int, 1, 'first snapshot is version 1');
INSERT INTO answers (site_id, map_id, client_id, source, persona_id, stage_id, touchpoint_id, emotion, obstacle_ids, created_at)
VALUES (901, 901, md5('fx-extra-1')::uuid, 'survey', 912, 921, 931, 5, '{941}', '2026-01-11'),
       (901, 901, md5('fx-extra-2')::uuid, 'survey', 912, 921, 931, 5, '{}', '2026-01-11'),
       (901, 901, md5('fx-extra-3')::uuid, 'survey', 912, 921, 931, 4, '{}', '2026-01-11');
SELECT is((jd_map_snapshot(901, '{}') ->> 'version')::int, 2, 'second snapshot is version 2');
SELECT is((SELECT count(*) FROM map_versions WHERE map_id = 901), 2::bigint, 'two versions stored');
SELECT is((SELECT document ->> 'format' FROM map_versions WHERE map_id = 901 AND version = 2), 'journeyd.map/1', 'the document is stored');

CREATE TEMP TABLE df AS SELECT jd_map_diff(901, 1, 2) AS d;
CREATE TEMP TABLE dc AS SELECT c ->> 'id' AS id, c FROM df, jsonb_array_elements(d -> 'cells') c;
SELECT is((SELECT c #> '{n,change}' FROM dc WHERE id = 'p912-s921-t931'), '3', 'n grew by 3');
SELECT is((SELECT (c #>> '{emotion,change}')::numeric FROM dc WHERE id = 'p912-s921-t931'), 1.9, 'emotion change');
SELECT ok((SELECT abs((c #>> '{emotion,welch_t}')::numeric - 1.9918) < 0.001 FROM dc WHERE id = 'p912-s921-t931'), 'Welch t');
SELECT ok((SELECT abs((c #>> '{emotion,df}')::numeric - 4.83) < 0.01 FROM dc WHERE id = 'p912-s921-t931'), 'Welch-Satterthwaite df');
SELECT ok((SELECT (c #>> '{emotion,p}')::numeric BETWEEN 0.100 AND 0.110 FROM dc WHERE id = 'p912-s921-t931'), 'two-sided p about 0.105');
SELECT is((SELECT c #> '{emotion,significant}' FROM dc WHERE id = 'p912-s921-t931'), 'false', 'not significant at 5%');
SELECT is((SELECT jsonb_agg(o -> 'slug') FROM dc, jsonb_array_elements(c -> 'obstacles_new') o WHERE id = 'p912-s921-t931'),
          '["price"]', 'price is a new obstacle');
SELECT is((SELECT c -> 'obstacles_resolved' FROM dc WHERE id = 'p912-s921-t931'), '[]', 'nothing resolved there');
SELECT is((SELECT c #> '{n,change}' FROM dc WHERE id = 'p911-s921-t931'), '0', 'an untouched cell does not change');
SELECT throws_ok($$SELECT jd_map_diff(901, 1, 7)$$, 'JD404', NULL, 'an unknown version is a 404');
SELECT * FROM finish();
ROLLBACK;
