-- Move the rows of a log kept in `public` by an earlier version into the private log, oldest
-- first, and drop the public table; one transaction.
BEGIN;
INSERT INTO cleanmig.population_operation_log
  (run_id, operation, mode, status, target_run_id, approval_sha256, extract_fingerprint,
   approved_by, backup_schema, counts, result, error, started_at, finished_at, duration_ms,
   db_user, os_user, tool_version)
SELECT run_id, operation, mode, status, target_run_id, approval_sha256, extract_fingerprint,
       approved_by, backup_schema, counts, result, error, started_at, finished_at, duration_ms,
       db_user, os_user, tool_version
FROM public.population_operation_log ORDER BY id;
DROP TABLE public.population_operation_log;
COMMIT
