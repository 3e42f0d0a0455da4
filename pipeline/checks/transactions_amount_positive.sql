-- Every transaction amount is positive.
-- severity: blocking
SELECT id, payment_provider_id, amount FROM transactions WHERE amount IS NULL OR amount <= 0
