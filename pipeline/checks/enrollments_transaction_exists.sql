-- Every enrollment's transaction (when set) is a staged transaction.
-- severity: blocking
SELECT e.id, e.user_id, e.transaction_id FROM enrollments AS e
WHERE e.transaction_id IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM transactions AS t WHERE t.id = e.transaction_id)
