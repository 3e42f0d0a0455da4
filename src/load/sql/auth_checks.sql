-- The tool's own blocking checks on Supabase's auth tables, run before commit beside the
-- pipeline's (pipeline/load/checks.sql). Each row: check name, failing count.
-- The load only inserts into auth: an existing row it changed carries this transaction's id in
-- xmin; one it deleted is missing from the ids taken at the start of the load.
SELECT 'no existing auth user lost or changed',
       (SELECT count(*) FROM cm_auth_users_before b
        WHERE NOT EXISTS (SELECT 1 FROM auth.users u WHERE u.id = b.id))
     + (SELECT count(*) FROM auth.users u
        WHERE u.xmin = pg_current_xact_id()::xid
          AND EXISTS (SELECT 1 FROM cm_auth_users_before b WHERE b.id = u.id))
UNION ALL
SELECT 'no existing auth identity lost or changed',
       (SELECT count(*) FROM cm_auth_identities_before b
        WHERE NOT EXISTS (SELECT 1 FROM auth.identities i WHERE i.id = b.id))
     + (SELECT count(*) FROM auth.identities i
        WHERE i.xmin = pg_current_xact_id()::xid
          AND EXISTS (SELECT 1 FROM cm_auth_identities_before b WHERE b.id = i.id))
