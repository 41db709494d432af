-- pgTAP: the core tables, their primary keys and key columns exist (sql/001_core.sql).
BEGIN;
SELECT no_plan();

SELECT has_table(t) FROM unnest(ARRAY['sites', 'maps', 'personas', 'stages', 'touchpoints',
    'touchpoint_stages', 'stage_resources', 'obstacles', 'surveys', 'questions', 'respondents',
    'sessions', 'touch_events', 'answers']) AS t;

SELECT has_pk(t) FROM unnest(ARRAY['sites', 'maps', 'personas', 'stages', 'touchpoints',
    'touchpoint_stages', 'stage_resources', 'obstacles', 'surveys', 'questions', 'respondents',
    'sessions', 'touch_events', 'answers']) AS t;

SELECT col_is_pk('respondents', ARRAY['site_id', 'id']);
SELECT col_is_pk('touchpoint_stages', ARRAY['touchpoint_id', 'stage_id']);
SELECT col_is_pk('sessions', 'id');
SELECT col_type_is('sessions', 'id', 'uuid');
SELECT col_type_is('answers', 'client_id', 'uuid');
SELECT col_type_is('touch_events', 'client_id', 'uuid');
SELECT col_type_is('answers', 'value', 'jsonb');
SELECT col_type_is('answers', 'obstacle_ids', 'bigint[]');
SELECT col_type_is('answers', 'choice', 'text[]');
SELECT col_type_is('sites', 'allowed_origins', 'text[]');

SELECT col_not_null('answers', c) FROM unnest(ARRAY['site_id', 'map_id', 'client_id', 'source',
    'obstacle_ids', 'created_at']) AS c;
SELECT col_not_null('touch_events', c) FROM unnest(ARRAY['site_id', 'client_id', 'session_id',
    'respondent_id', 'kind']) AS c;
SELECT col_not_null('sites', c) FROM unnest(ARRAY['key', 'name', 'allowed_origins', 'consent_mode']) AS c;

SELECT col_default_is('sites', 'consent_mode', 'none-required');
SELECT col_default_is('surveys', 'status', 'draft');
SELECT col_default_is('answers', 'source', 'survey');
SELECT col_default_is('questions', 'version', 1);

SELECT col_is_unique('sites', 'key');
SELECT col_is_unique('answers', ARRAY['site_id', 'client_id']);
SELECT col_is_unique('touch_events', ARRAY['site_id', 'client_id']);
SELECT col_is_unique(t, ARRAY['map_id', 'slug'])
  FROM unnest(ARRAY['maps', 'personas', 'stages', 'touchpoints', 'obstacles', 'surveys']) AS t
 WHERE t <> 'maps';
SELECT col_is_unique('maps', ARRAY['site_id', 'slug']);
SELECT col_is_unique('questions', ARRAY['survey_id', 'key', 'version']);

SELECT * FROM finish();
ROLLBACK;
