-- Customers: tagged and paid + tag only + payment only = customers; existing profile + existing login only + new = customers
WITH final AS (
    SELECT 1 AS n, 'tagged as paid and paid P2P in Xendit' AS customers,
        (SELECT count(*) FROM customers WHERE evidence = 'tagged_and_paid') AS value
    UNION ALL SELECT 2, 'tagged as paid only (no Xendit payment)',
        (SELECT count(*) FROM customers WHERE evidence = 'tag_only')
    UNION ALL SELECT 3, 'paid P2P in Xendit only (not tagged)',
        (SELECT count(*) FROM customers WHERE evidence = 'payment_only')
    UNION ALL SELECT 4, '= customers', (SELECT count(*) FROM customers)
    UNION ALL SELECT 5, 'with an existing profile (kept, id unchanged)',
        (SELECT count(*) FROM customers WHERE existing_profile_id IS NOT NULL)
    UNION ALL SELECT 6, 'with an existing login but no profile',
        (SELECT count(*) FROM customers WHERE existing_profile_id IS NULL AND existing_auth_id IS NOT NULL)
    UNION ALL SELECT 7, 'new (auth user to create)',
        (SELECT count(*) FROM customers WHERE existing_profile_id IS NULL AND existing_auth_id IS NULL)
    UNION ALL SELECT 8, 'customers with a profile but no login (auth user to create)',
        (SELECT count(*) FROM customers WHERE existing_profile_id IS NOT NULL AND existing_auth_id IS NULL)
)

SELECT customers, value FROM final ORDER BY n
