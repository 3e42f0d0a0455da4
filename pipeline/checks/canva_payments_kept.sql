-- Every kept paid Canva payment is a transaction (a Canva sale is real money).
-- severity: blocking
SELECT p._source_row, p.external_id, p.email
FROM payments AS p
WHERE p.outcome = 'kept' AND p.product = 'canva'
    AND NOT EXISTS (SELECT 1 FROM transactions AS t WHERE t.payment_provider_id = p.external_id)
