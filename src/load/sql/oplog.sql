-- Audit trail of every load and rollback, dry or applied, successful or failed.
-- Written through its own connection, so a row survives the rollback of the run it describes.
CREATE TABLE IF NOT EXISTS public.population_operation_log (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id           text        NOT NULL,
  operation        text        NOT NULL,            -- load | rollback
  mode             text        NOT NULL,            -- dry_run | apply
  status           text        NOT NULL,            -- running | dry_run_completed | success | failed
  target_run_id    text,                            -- rollback: the load it undoes
  approval_sha256  text,                            -- sha256 of artifacts/approved.json
  extract_fingerprint text,
  approved_by      text,
  backup_schema    text,
  counts           jsonb,                           -- per table inserted/updated/deleted/unchanged
  result           jsonb,                           -- the JSON the command printed
  error            text,
  started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at      timestamptz,
  duration_ms      bigint,
  db_user          text        NOT NULL DEFAULT current_user,
  os_user          text,
  tool_version     text
);
CREATE INDEX IF NOT EXISTS population_operation_log_run_id_idx
  ON public.population_operation_log (run_id);
