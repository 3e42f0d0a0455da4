-- Contacts left out whose tags suggest they might be customers (settings.suspicious_tags)
WITH source AS (
    SELECT c.email, c.outcome, unnest(c.tag_keys) AS tag
    FROM contacts AS c
    WHERE c.outcome IN ('out_of_scope', 'rejected')
),

flagged AS (
    SELECT s.*
    FROM config AS cfg
    CROSS JOIN source AS s
    WHERE array_has(cfg.suspicious_tags, s.tag)
        AND (s.email IS NULL OR NOT EXISTS (SELECT 1 FROM profiles AS f WHERE f.email = s.email))
),

final AS (
    SELECT
        tag,
        count(*) AS contact_rows,
        count(DISTINCT email) AS emails,
        array_to_string(array_slice(array_sort(array_distinct(array_agg(email))), 1, 5), ', ') AS first_emails
    FROM flagged
    GROUP BY tag
)

SELECT * FROM final ORDER BY contact_rows DESC, tag
