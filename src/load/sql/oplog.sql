-- The tool's private schema and its audit trail: every load and rollback, dry or applied,
-- successful or failed. Nothing here is for the app's API roles: Supabase's Data API serves the
-- exposed schemas to anyone holding the anon key, so this schema grants nothing to PUBLIC, anon
-- or authenticated, and its tables have row-level security on with no policy.
CREATE SCHEMA IF NOT EXISTS cleanmig;
COMMENT ON SCHEMA cleanmig IS 'cleanmig: operation log of loads and rollbacks (private)';
REVOKE ALL ON SCHEMA cleanmig FROM PUBLIC;
CREATE TABLE IF NOT EXISTS cleanmig.population_operation_log (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id           text        NOT NULL,
  operation        text        NOT NULL,            -- load | rollback
  mode             text        NOT NULL,            -- dry_run | apply
  status           text        NOT NULL,            -- running | dry_run_completed | success | failed
  target_run_id    text,                            -- rollback: the run it undoes
  approval_sha256  text,                            -- sha256 of artifacts/approved.json
  extract_fingerprint text,
  approved_by      text,
  backup_schema    text,
  counts           jsonb,                           -- per table inserted/updated/deleted/unchanged
  result           jsonb,                           -- the JSON the command printed (message redacted)
  error            text,                            -- the error's first line, emails masked
  started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at      timestamptz,
  duration_ms      bigint,
  db_user          text        NOT NULL DEFAULT current_user,
  os_user          text,
  tool_version     text
);
CREATE INDEX IF NOT EXISTS population_operation_log_run_id_idx
  ON cleanmig.population_operation_log (run_id);
REVOKE ALL ON ALL TABLES IN SCHEMA cleanmig FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA cleanmig FROM PUBLIC;
-- An applied load's fingerprint of every catalogue table, taken as it commits: a later load of
-- the same approval that finds the tables unchanged has nothing to do (src/load/applied.rs).
-- Added only when missing: ALTER TABLE would wait for a load that is reading the log.
DO $add$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute
                 WHERE attrelid = 'cleanmig.population_operation_log'::regclass
                   AND attname = 'applied_state' AND NOT attisdropped) THEN
    ALTER TABLE cleanmig.population_operation_log ADD COLUMN applied_state jsonb;
  END IF;
END
$add$
