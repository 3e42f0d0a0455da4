-- Every enrollment's course exists in courses.
-- severity: blocking
SELECT id, user_id, course_id FROM enrollments
WHERE course_id IS NULL OR course_id NOT IN (SELECT id FROM extract_courses)
