-- Every source row is accounted for exactly once: kept, merged, out of scope or rejected.
-- severity: blocking
SELECT 'xendit' AS source_table, (SELECT count(*) FROM extract_xendit) AS source_rows,
       (SELECT count(*) FROM payments WHERE outcome = 'kept') + (SELECT count(*) FROM rejects WHERE source_table = 'xendit') AS accounted
WHERE (SELECT count(*) FROM extract_xendit)
   <> (SELECT count(*) FROM payments WHERE outcome = 'kept') + (SELECT count(*) FROM rejects WHERE source_table = 'xendit')
UNION ALL
SELECT 'systemeio', (SELECT count(*) FROM extract_systemeio),
       (SELECT count(*) FROM contacts WHERE outcome = 'kept') + (SELECT count(*) FROM rejects WHERE source_table = 'systemeio')
WHERE (SELECT count(*) FROM extract_systemeio)
   <> (SELECT count(*) FROM contacts WHERE outcome = 'kept') + (SELECT count(*) FROM rejects WHERE source_table = 'systemeio')
