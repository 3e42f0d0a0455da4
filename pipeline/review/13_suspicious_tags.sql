-- Contacts left out whose tags suggest they might be customers (settings.suspicious_tags; the first 1,000)
WITH source AS (
    SELECT c._source_row, c.contact_id, c.email, c.first_name, c.last_name, c.tags_text, c.outcome, c.reason, c.tag_keys
    FROM contacts AS c
    WHERE c.outcome IN ('out_of_scope', 'rejected')
),

flagged AS (
    SELECT s.*
    FROM config AS cfg
    CROSS JOIN source AS s
    WHERE array_has_any(cfg.suspicious_tags, s.tag_keys)
        AND (s.email IS NULL OR NOT EXISTS (SELECT 1 FROM profiles AS f WHERE f.email = s.email))
),

totals AS (
    SELECT count(*) AS total_rows FROM flagged
),

first_rows AS (
    SELECT
        _source_row AS source_row, contact_id, email, first_name, last_name, tags_text AS tags, outcome, reason
    FROM flagged
    ORDER BY email, source_row
    LIMIT 1000
),

final AS (
    SELECT f.*, t.total_rows
    FROM totals AS t
    CROSS JOIN first_rows AS f
)

SELECT * FROM final ORDER BY email, source_row
