-- The P2P course exists in courses (settings.p2p_course_slug or p2p_course_title); without it nobody can be enrolled.
-- severity: blocking
SELECT cfg.p2p_course_slug, cfg.p2p_course_title, 'no such course in courses' AS problem
FROM config AS cfg
WHERE NOT EXISTS (SELECT 1 FROM p2p_course)
