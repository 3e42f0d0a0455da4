-- Seed validation pack (transactions): transactions without a user (Canva buyers without a profile are expected here; their email is in metadata).
-- severity: warning
SELECT id, payment_provider_id, product_type, metadata FROM transactions WHERE user_id IS NULL
