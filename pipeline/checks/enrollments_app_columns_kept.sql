-- An existing enrollment of the same user and course keeps its id and the columns the app owns (progress, last_activity_at, completion_date, notes).
-- severity: blocking
SELECT c.id AS existing_id, s.id AS staged_id, s.user_id
FROM enrollments AS s
JOIN extract_enrollments AS c ON c.user_id = s.user_id AND c.course_id = s.course_id
WHERE (s.id <> c.id)
    OR (s.progress IS DISTINCT FROM c.progress)
    OR (s.last_activity_at IS DISTINCT FROM c.last_activity_at)
    OR (s.completion_date IS DISTINCT FROM c.completion_date)
    OR (s.notes IS DISTINCT FROM c.notes)
