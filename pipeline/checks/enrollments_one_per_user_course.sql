-- At most one enrollment per (user_id, course_id) (unique in the table).
-- severity: blocking
SELECT user_id, course_id, count(*) AS enrollments FROM enrollments GROUP BY user_id, course_id HAVING count(*) > 1
