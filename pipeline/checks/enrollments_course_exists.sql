-- Every enrollment's course exists in courses.
-- severity: blocking
SELECT e.id, e.user_id, e.course_id FROM enrollments AS e
WHERE e.course_id IS NULL
    OR NOT EXISTS (SELECT 1 FROM extract_courses AS c WHERE c.id = e.course_id)
