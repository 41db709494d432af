-- journeyd core schema: sites, the journey model (maps, personas, stages, touchpoints, resources,
-- obstacle codebook, surveys, questions), respondents, sessions, touch events and answers in long
-- format. Every table that stores client frames has a unique (site_id, client_id) so a resend never
-- makes a second row. Enumerations are text + CHECK so later migrations can widen them.

CREATE TABLE sites (
    id              bigserial PRIMARY KEY,
    key             text NOT NULL UNIQUE CHECK (key ~ '^[A-Za-z0-9_-]{8,64}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    allowed_origins text[] NOT NULL DEFAULT '{}',
    consent_mode    text NOT NULL DEFAULT 'none-required'
                    CHECK (consent_mode IN ('none-required', 'opt-in', 'cookieless')),
    retention_days  integer CHECK (retention_days > 0),
    redact          text NOT NULL DEFAULT 'off' CHECK (redact IN ('off', 'ingest', 'export')),
    store_ip        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE maps (
    id             bigserial PRIMARY KEY,
    site_id        bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    slug           text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    goal           text NOT NULL DEFAULT '',
    scope          text NOT NULL DEFAULT '',
    customer_group text NOT NULL DEFAULT '',
    min_evidence   integer NOT NULL DEFAULT 5 CHECK (min_evidence >= 1),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, slug)
);

CREATE TABLE personas (
    id                 bigserial PRIMARY KEY,
    map_id             bigint NOT NULL REFERENCES maps (id) ON DELETE CASCADE,
    slug               text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    age_min            integer CHECK (age_min BETWEEN 0 AND 130),
    age_max            integer CHECK (age_max BETWEEN 0 AND 130),
    job_role           text NOT NULL DEFAULT '',
    family_status      text NOT NULL DEFAULT '',
    professional_goals text NOT NULL DEFAULT '',
    personal_interests text NOT NULL DEFAULT '',
    description        text NOT NULL DEFAULT '',
    data_sources       text NOT NULL DEFAULT '',
    position           integer NOT NULL DEFAULT 0,
    UNIQUE (map_id, slug),
    UNIQUE (id, map_id),
    CHECK (age_min IS NULL OR age_max IS NULL OR age_min <= age_max)
);

CREATE TABLE stages (
    id       bigserial PRIMARY KEY,
    map_id   bigint NOT NULL REFERENCES maps (id) ON DELETE CASCADE,
    slug     text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name     text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    meaning  text NOT NULL DEFAULT '',
    position integer NOT NULL DEFAULT 0,
    UNIQUE (map_id, slug),
    UNIQUE (id, map_id)
);

CREATE TABLE touchpoints (
    id      bigserial PRIMARY KEY,
    map_id  bigint NOT NULL REFERENCES maps (id) ON DELETE CASCADE,
    slug    text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    channel text NOT NULL DEFAULT '',
    position integer NOT NULL DEFAULT 0,
    UNIQUE (map_id, slug),
    UNIQUE (id, map_id)
);

-- Which stages a touchpoint may appear in.
CREATE TABLE touchpoint_stages (
    touchpoint_id bigint NOT NULL REFERENCES touchpoints (id) ON DELETE CASCADE,
    stage_id      bigint NOT NULL REFERENCES stages (id) ON DELETE CASCADE,
    PRIMARY KEY (touchpoint_id, stage_id)
);

-- The backstage lane: what each stage runs on.
CREATE TABLE stage_resources (
    id       bigserial PRIMARY KEY,
    stage_id bigint NOT NULL REFERENCES stages (id) ON DELETE CASCADE,
    kind     text NOT NULL CHECK (kind IN ('department', 'technology', 'process')),
    name     text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    notes    text NOT NULL DEFAULT '',
    owner    text NOT NULL DEFAULT '',
    position integer NOT NULL DEFAULT 0
);

-- The obstacle codebook of a map.
CREATE TABLE obstacles (
    id          bigserial PRIMARY KEY,
    map_id      bigint NOT NULL REFERENCES maps (id) ON DELETE CASCADE,
    slug        text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '',
    UNIQUE (map_id, slug)
);

CREATE TABLE surveys (
    id         bigserial PRIMARY KEY,
    map_id     bigint NOT NULL REFERENCES maps (id) ON DELETE CASCADE,
    slug       text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    title      text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    status     text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'live', 'archived')),
    locale     text NOT NULL DEFAULT 'en',
    display    jsonb NOT NULL DEFAULT '{"mode":"popover","corner":"bottom-right"}',
    trigger    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (map_id, slug)
);

-- Questions are immutable once answered: an edit retires the old row (retired_at) and adds a new
-- one with version + 1 under the same key, so old answers keep their meaning.
CREATE TABLE questions (
    id            bigserial PRIMARY KEY,
    survey_id     bigint NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    key           text NOT NULL CHECK (key ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    version       integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    position      integer NOT NULL DEFAULT 0,
    kind          text NOT NULL CHECK (kind IN ('emotion', 'single_choice', 'multi_choice',
                  'obstacle', 'text', 'action', 'nps', 'csat', 'goal')),
    lane          text CHECK (lane IN ('actions', 'thoughts', 'emotions', 'obstacles', 'goal')),
    prompt        text NOT NULL CHECK (length(prompt) BETWEEN 1 AND 1000),
    required      boolean NOT NULL DEFAULT false,
    options       jsonb,
    stage_id      bigint REFERENCES stages (id),
    touchpoint_id bigint REFERENCES touchpoints (id),
    show_if       jsonb,
    retired_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (survey_id, key, version)
);
CREATE UNIQUE INDEX questions_one_live_version ON questions (survey_id, key) WHERE retired_at IS NULL;

CREATE TABLE respondents (
    site_id    bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    id         uuid NOT NULL,
    email      text,
    subject    text,          -- verified identity (signed token), NULL when anonymous
    verified   boolean NOT NULL DEFAULT false,
    erased_at  timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, id)
);

CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    site_id       bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    respondent_id uuid NOT NULL,
    consent_mode  text NOT NULL,
    consent       boolean NOT NULL DEFAULT false,
    url           text NOT NULL DEFAULT '',
    referrer      text NOT NULL DEFAULT '',
    lang          text NOT NULL DEFAULT '',
    utm           jsonb NOT NULL DEFAULT '{}',
    persona_id    bigint REFERENCES personas (id) ON DELETE SET NULL,
    stage_id      bigint REFERENCES stages (id) ON DELETE SET NULL,
    touchpoint_id bigint REFERENCES touchpoints (id) ON DELETE SET NULL,
    client_ip     inet,
    started_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (site_id, respondent_id) REFERENCES respondents (site_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_respondent ON sessions (site_id, respondent_id);
CREATE INDEX sessions_started ON sessions (site_id, started_at);

CREATE TABLE touch_events (
    id            bigserial PRIMARY KEY,
    site_id       bigint NOT NULL,
    client_id     uuid NOT NULL,
    session_id    uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    respondent_id uuid NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('pageview', 'event')),
    name          text NOT NULL DEFAULT '',
    url           text NOT NULL DEFAULT '',
    stage_id      bigint REFERENCES stages (id) ON DELETE SET NULL,
    touchpoint_id bigint REFERENCES touchpoints (id) ON DELETE SET NULL,
    client_ts     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, client_id)
);
CREATE INDEX touch_events_session ON touch_events (session_id, created_at);

-- One row per answer, from any source. survey/question are NULL for chat and interview evidence.
CREATE TABLE answers (
    id              bigserial PRIMARY KEY,
    site_id         bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    map_id          bigint NOT NULL REFERENCES maps (id) ON DELETE CASCADE,
    client_id       uuid NOT NULL,
    source          text NOT NULL DEFAULT 'survey' CHECK (source IN ('survey', 'chat', 'interview')),
    survey_id       bigint REFERENCES surveys (id) ON DELETE SET NULL,
    question_id     bigint REFERENCES questions (id) ON DELETE SET NULL,
    session_id      uuid,
    respondent_id   uuid,
    persona_id      bigint REFERENCES personas (id) ON DELETE SET NULL,
    stage_id        bigint REFERENCES stages (id) ON DELETE SET NULL,
    touchpoint_id   bigint REFERENCES touchpoints (id) ON DELETE SET NULL,
    emotion         smallint CHECK (emotion BETWEEN 1 AND 5),
    score           smallint CHECK (score BETWEEN 0 AND 10),  -- NPS 0..10 or CSAT 1..5
    goal_reached    boolean,
    obstacle_ids    bigint[] NOT NULL DEFAULT '{}',
    choice          text[],                                   -- single/multi choice values
    thought         text CHECK (length(thought) <= 4000),     -- free text, quotes
    action          text CHECK (length(action) <= 4000),
    value           jsonb,                                    -- the raw value as sent
    interviewee     text,
    client_ts       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, client_id)
);
CREATE INDEX answers_cell ON answers (map_id, persona_id, stage_id, touchpoint_id);
CREATE INDEX answers_time ON answers (map_id, created_at);
CREATE INDEX answers_respondent ON answers (site_id, respondent_id);
