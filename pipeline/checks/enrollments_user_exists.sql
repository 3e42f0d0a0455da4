-- Every enrollment's user is a staged profile.
-- severity: blocking
SELECT id, user_id FROM enrollments WHERE user_id IS NULL OR user_id NOT IN (SELECT id FROM profiles)
