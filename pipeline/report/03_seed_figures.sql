-- The seed's figures on this data
WITH final AS (
    SELECT 1 AS n, 'xendit rows, paid "Papers to Profits"' AS figure,
        (SELECT count(*) FROM payments WHERE product = 'p2p' AND outcome <> 'out_of_scope') AS value
    UNION ALL SELECT 2, '  distinct payments (External IDs) kept',
        (SELECT count(*) FROM payments WHERE product = 'p2p' AND outcome = 'kept')
    UNION ALL SELECT 3, '  distinct payer emails',
        (SELECT count(DISTINCT email) FROM payments WHERE product = 'p2p' AND outcome = 'kept')
    UNION ALL SELECT 4, 'xendit rows, paid Canva',
        (SELECT count(*) FROM payments WHERE product = 'canva' AND outcome <> 'out_of_scope')
    UNION ALL SELECT 5, 'systemeio rows tagged as paid',
        (SELECT count(*) FROM contacts WHERE is_paid_tagged)
    UNION ALL SELECT 6, '  distinct tagged emails',
        (SELECT count(DISTINCT email) FROM contacts WHERE is_paid_tagged AND outcome IN ('kept', 'merged'))
    UNION ALL SELECT 7, 'existing unified_profiles', (SELECT count(*) FROM extract_unified_profiles)
    UNION ALL SELECT 8, 'existing auth.users', (SELECT count(*) FROM extract_auth_users)
    UNION ALL SELECT 9, 'existing transactions', (SELECT count(*) FROM extract_transactions)
    UNION ALL SELECT 10, 'existing enrollments', (SELECT count(*) FROM extract_enrollments)
)

SELECT figure, value FROM final ORDER BY n
