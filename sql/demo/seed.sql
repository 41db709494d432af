-- Demo site for the quickstart and the tests: an online shop with the default five stages, the
-- default touchpoints, three personas, an obstacle codebook, two live surveys and a chat agent.
-- Idempotent: running it again changes nothing.
BEGIN;
INSERT INTO sites (key, name, allowed_origins, consent_mode)
VALUES ('demo-site-key-0001', 'Demo shop', :'origins'::text[], 'none-required')
ON CONFLICT (key) DO UPDATE SET allowed_origins = EXCLUDED.allowed_origins;

INSERT INTO maps (site_id, slug, name, goal, scope, customer_group)
SELECT id, 'online-purchase', 'Online purchase', 'Understand why shoppers abandon checkout',
       'From first ad to first review', 'Online shoppers in the UK'
FROM sites WHERE key = 'demo-site-key-0001'
ON CONFLICT (site_id, slug) DO NOTHING;

CREATE TEMP TABLE demo_map AS
SELECT m.id FROM maps m JOIN sites s ON s.id = m.site_id
WHERE s.key = 'demo-site-key-0001' AND m.slug = 'online-purchase';

INSERT INTO stages (map_id, slug, name, meaning, position)
SELECT (SELECT id FROM demo_map), v.slug, v.name, v.meaning, v.pos
FROM (VALUES ('awareness', 'Awareness', 'The customer learns the product exists', 1),
             ('interest', 'Interest', 'The customer wants to know more', 2),
             ('consideration', 'Consideration', 'The customer compares options', 3),
             ('purchase', 'Purchase', 'The customer buys', 4),
             ('advocacy', 'Advocacy', 'The customer recommends or reviews', 5)) AS v(slug, name, meaning, pos)
ON CONFLICT (map_id, slug) DO NOTHING;

INSERT INTO touchpoints (map_id, slug, name, channel, position)
SELECT (SELECT id FROM demo_map), v.slug, v.name, v.channel, v.pos
FROM (VALUES ('marketing-content', 'Marketing content', 'owned', 1),
             ('paid-ads', 'Paid ads', 'paid', 2),
             ('social-media', 'Social media', 'earned', 3),
             ('reviews', 'Third-party reviews', 'earned', 4),
             ('website', 'Website', 'owned', 5),
             ('email', 'Email marketing', 'owned', 6),
             ('phone', 'Phone calls', 'service', 7),
             ('live-chat', 'Live chat', 'service', 8),
             ('in-person', 'In-person', 'service', 9),
             ('onboarding', 'Product onboarding', 'product', 10),
             ('self-service', 'Customer self-service', 'product', 11)) AS v(slug, name, channel, pos)
ON CONFLICT (map_id, slug) DO NOTHING;

-- Every touchpoint may appear in every stage in the demo.
INSERT INTO touchpoint_stages (touchpoint_id, stage_id)
SELECT t.id, s.id FROM touchpoints t JOIN stages s ON s.map_id = t.map_id
WHERE t.map_id = (SELECT id FROM demo_map)
ON CONFLICT DO NOTHING;

INSERT INTO personas (map_id, slug, name, age_min, age_max, job_role, family_status,
                      professional_goals, personal_interests, description, position)
SELECT (SELECT id FROM demo_map), v.* FROM (VALUES
  ('budget-parent', 'Budget-conscious parent', 32, 45, 'Nurse', 'Married, two children',
   'Keep a stable shift pattern', 'Cooking, family trips', 'Compares prices and shipping costs', 1),
  ('busy-professional', 'Busy professional', 28, 40, 'Product manager', 'Single',
   'Get promoted', 'Running, podcasts', 'Buys on mobile between meetings', 2),
  ('first-time-buyer', 'First-time buyer', 18, 25, 'Student', 'Lives with flatmates',
   'Finish the degree', 'Gaming, music', 'Unsure whether the shop is trustworthy', 3)
) AS v(slug, name, age_min, age_max, job_role, family_status, professional_goals,
       personal_interests, description, position)
ON CONFLICT (map_id, slug) DO NOTHING;

INSERT INTO obstacles (map_id, slug, name)
SELECT (SELECT id FROM demo_map), v.slug, v.name FROM (VALUES
  ('price-too-high', 'Price too high'), ('checkout-too-complex', 'Checkout too complex'),
  ('missing-feature', 'Missing feature'), ('shipping-cost', 'Shipping cost')) AS v(slug, name)
ON CONFLICT (map_id, slug) DO NOTHING;

INSERT INTO surveys (map_id, slug, title, status, display, trigger)
SELECT (SELECT id FROM demo_map), v.slug, v.title, 'live', v.display::jsonb, v.trig::jsonb FROM (VALUES
  ('product-pulse', 'How is your visit going?', '{"mode":"popover","corner":"bottom-right"}',
   '{"url":{"op":"contains","value":"product"},"delay_ms":1500}'),
  ('checkout-pulse', 'Quick question about checkout', '{"mode":"modal"}',
   '{"url":{"op":"contains","value":"checkout"},"exit_intent":true}')
) AS v(slug, title, display, trig)
ON CONFLICT (map_id, slug) DO NOTHING;

INSERT INTO questions (survey_id, key, position, kind, lane, prompt, required, options, stage_id, touchpoint_id)
SELECT sv.id, q.key, q.pos, q.kind, q.lane, q.prompt, q.required, q.options::jsonb,
       (SELECT id FROM stages WHERE map_id = sv.map_id AND slug = q.stage),
       (SELECT id FROM touchpoints WHERE map_id = sv.map_id AND slug = q.tp)
FROM surveys sv JOIN (VALUES
  ('product-pulse', 'feel', 1, 'emotion', 'emotions', 'How do you feel about this product so far?', true, NULL, 'consideration', 'website'),
  ('product-pulse', 'looking-for', 2, 'single_choice', 'actions', 'What are you here to do?', false,
   '[{"value":"compare","label":"Compare options"},{"value":"buy","label":"Buy now"},{"value":"browse","label":"Just browsing"}]', 'consideration', 'website'),
  ('product-pulse', 'thoughts', 3, 'text', 'thoughts', 'Anything on your mind?', false, NULL, 'consideration', 'website'),
  ('checkout-pulse', 'feel', 1, 'emotion', 'emotions', 'How does checkout feel?', true, NULL, 'purchase', 'website'),
  ('checkout-pulse', 'blockers', 2, 'obstacle', 'obstacles', 'Is anything getting in your way?', false, NULL, 'purchase', 'website'),
  ('checkout-pulse', 'done', 3, 'goal', 'goal', 'Did you manage to do what you came for?', false, NULL, 'purchase', 'website'),
  ('checkout-pulse', 'recommend', 4, 'nps', NULL, 'How likely are you to recommend us?', false, NULL, 'advocacy', 'website')
) AS q(survey, key, pos, kind, lane, prompt, required, options, stage, tp)
  ON sv.slug = q.survey AND sv.map_id = (SELECT id FROM demo_map)
ON CONFLICT DO NOTHING;

-- A chat agent, so the demo has live chat (the widget offers chat while a site has an enabled
-- agent): agent@demo.example with the password journeyd-demo-agent, signing in at /agent. A demo
-- account with a published password: never seed it into a real site. Created once (bcrypt through
-- jd_agent_create); running the seed again leaves it, and any password change, alone.
DO $$
BEGIN
    PERFORM jd_agent_create(s.id, 'agent@demo.example', 'Demo agent', 'admin', 'journeyd-demo-agent')
       FROM sites s
      WHERE s.key = 'demo-site-key-0001'
        AND NOT EXISTS (SELECT 1 FROM agents a WHERE a.site_id = s.id AND lower(a.email) = 'agent@demo.example');
END $$;
COMMIT;
