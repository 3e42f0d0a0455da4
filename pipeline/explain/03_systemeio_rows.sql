-- systemeio contacts with the person's email: outcome and reason
WITH source AS (
    SELECT
        c._source_row AS source_row,
        c.contact_id,
        lower(trim(c.email)) AS email,
        c.first_name,
        c.last_name,
        c.tags,
        CAST(c.created_at AS VARCHAR) AS created_at
    FROM extract_systemeio AS c
),

final AS (
    SELECT
        s.source_row,
        s.contact_id,
        s.email,
        s.first_name,
        s.last_name,
        s.tags,
        s.created_at,
        coalesce(r.outcome, 'kept') AS outcome,
        r.reason
    FROM person AS p
    JOIN source AS s ON s.email = p.email
    LEFT JOIN stage_rejects AS r ON r.source_table = 'systemeio' AND r._source_row = s.source_row
)

SELECT * FROM final ORDER BY source_row
