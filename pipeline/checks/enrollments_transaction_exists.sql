-- Every enrollment's transaction (when set) is a staged transaction.
-- severity: blocking
SELECT id, user_id, transaction_id FROM enrollments
WHERE transaction_id IS NOT NULL AND transaction_id NOT IN (SELECT id FROM transactions)
