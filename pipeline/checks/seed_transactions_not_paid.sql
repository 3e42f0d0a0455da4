-- Seed validation pack (transactions): every transaction is PAID or SETTLED.
-- severity: blocking
SELECT id, payment_provider_id, status FROM transactions WHERE status NOT IN ('PAID', 'SETTLED') OR status IS NULL
