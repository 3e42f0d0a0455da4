-- Columns the app owns (tier, tier_assignment, tier_assignment_notes, last_active_at) are carried over from the existing profile.
-- severity: blocking
SELECT s.id, s.email
FROM profiles AS s
JOIN extract_unified_profiles AS c ON c.id = s.id
WHERE (s.tier IS DISTINCT FROM c.tier)
    OR (s.tier_assignment IS DISTINCT FROM c.tier_assignment)
    OR (s.tier_assignment_notes IS DISTINCT FROM c.tier_assignment_notes)
    OR (s.last_active_at IS DISTINCT FROM c.last_active_at)
