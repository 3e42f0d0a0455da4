-- Every transaction is in PHP.
-- severity: blocking
SELECT id, payment_provider_id, currency FROM transactions WHERE currency IS NULL OR currency <> 'PHP'
