-- p2p_course: the Papers to Profits course in `courses`, found by slug
-- (settings.p2p_course_slug), else by title (settings.p2p_course_title, any case).
-- No row here fails the blocking check p2p_course_found.
WITH source AS (
    SELECT * FROM extract_courses
),

matched AS (
    SELECT
        s.id,
        s.slug,
        s.title,
        CASE WHEN s.slug = cfg.p2p_course_slug THEN 0 ELSE 1 END AS preference
    FROM config AS cfg
    CROSS JOIN source AS s
    WHERE s.slug = cfg.p2p_course_slug
        OR lower(trim(s.title)) = lower(trim(cfg.p2p_course_title))
),

final AS (
    SELECT id, slug, title
    FROM matched
    ORDER BY preference, id
    LIMIT 1
)

SELECT * FROM final
