-- Every enrollment's user is a staged profile.
-- severity: blocking
SELECT e.id, e.user_id FROM enrollments AS e
WHERE e.user_id IS NULL OR NOT EXISTS (SELECT 1 FROM profiles AS f WHERE f.id = e.user_id)
