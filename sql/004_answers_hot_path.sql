-- The ingest hot path: answers kept five foreign keys to small model tables (survey, question,
-- persona, stage, touchpoint). Each costs an index probe per inserted row; measured on the 2-core
-- machine, COPY into answers ran at ~20k rows/s with them and ~75k rows/s without (bench/run.sh).
-- The daemon already validates every one of these ids against its catalog before a row is queued,
-- so the per-row checks bought nothing on insert. What they did buy is the ON DELETE SET NULL
-- behaviour; parent-side statement triggers keep exactly that, paid on the rare delete instead of
-- on every insert. site_id and map_id keep their foreign keys (and the CASCADE they carry).

ALTER TABLE answers DROP CONSTRAINT answers_survey_id_fkey;
ALTER TABLE answers DROP CONSTRAINT answers_question_id_fkey;
ALTER TABLE answers DROP CONSTRAINT answers_persona_id_fkey;
ALTER TABLE answers DROP CONSTRAINT answers_stage_id_fkey;
ALTER TABLE answers DROP CONSTRAINT answers_touchpoint_id_fkey;

CREATE FUNCTION jd_answers_unlink() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV[0] names the answers column that pointed at the deleted rows.
    EXECUTE format('UPDATE answers SET %I = NULL WHERE %I IN (SELECT id FROM gone)',
                   TG_ARGV[0], TG_ARGV[0]);
    RETURN NULL;
END $$;

CREATE TRIGGER answers_unlink_survey AFTER DELETE ON surveys
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION jd_answers_unlink('survey_id');
CREATE TRIGGER answers_unlink_question AFTER DELETE ON questions
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION jd_answers_unlink('question_id');
CREATE TRIGGER answers_unlink_persona AFTER DELETE ON personas
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION jd_answers_unlink('persona_id');
CREATE TRIGGER answers_unlink_stage AFTER DELETE ON stages
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION jd_answers_unlink('stage_id');
CREATE TRIGGER answers_unlink_touchpoint AFTER DELETE ON touchpoints
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION jd_answers_unlink('touchpoint_id');
