-- The load's blocking checks on the destination tables, run inside its transaction after it
-- wrote and before it commits; any failing row refuses the commit. Each row: the check's name
-- and its count of failing rows. Name the tables as pipeline/destinations.csv does.
--
-- Transform copies this file into stage/manifest.json, so the approval covers it and the load
-- runs it as approved. It runs read-only: a statement that writes fails the load.
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
