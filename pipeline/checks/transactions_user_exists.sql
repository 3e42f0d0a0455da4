-- Every transaction's user (when set) is a staged profile.
-- severity: blocking
SELECT id, user_id FROM transactions WHERE user_id IS NOT NULL AND user_id NOT IN (SELECT id FROM profiles)
