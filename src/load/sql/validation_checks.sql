-- Blocking checks run on the real tables before commit. Each row: check name, failing count.
-- (Row counts per reconciled table are checked from the catalogue beside these.)
SELECT 'every profile has an auth user',
       (SELECT count(*) FROM public.unified_profiles p
        WHERE NOT EXISTS (SELECT 1 FROM auth.users u WHERE u.id = p.id))
UNION ALL
SELECT 'every transaction user exists',
       (SELECT count(*) FROM public.transactions t
        WHERE t.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM auth.users u WHERE u.id = t.user_id))
UNION ALL
SELECT 'every enrollment user has a profile',
       (SELECT count(*) FROM public.enrollments e
        WHERE NOT EXISTS (SELECT 1 FROM public.unified_profiles p WHERE p.id = e.user_id))
UNION ALL
SELECT 'every enrollment transaction exists',
       (SELECT count(*) FROM public.enrollments e
        WHERE e.transaction_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM public.transactions t WHERE t.id = e.transaction_id))
UNION ALL
SELECT 'every enrollment course exists',
       (SELECT count(*) FROM public.enrollments e
        WHERE NOT EXISTS (SELECT 1 FROM public.courses c WHERE c.id = e.course_id))
UNION ALL
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
