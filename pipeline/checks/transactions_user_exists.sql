-- Every transaction's user (when set) is a staged profile.
-- severity: blocking
SELECT t.id, t.user_id FROM transactions AS t
WHERE t.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM profiles AS f WHERE f.id = t.user_id)
