-- Every kept paid Canva payment is a transaction (a Canva sale is real money).
-- severity: blocking
SELECT p._source_row, p.external_id, p.email
FROM payments AS p
WHERE p.outcome = 'kept' AND p.product = 'canva'
    AND p.external_id NOT IN (SELECT payment_provider_id FROM transactions)
