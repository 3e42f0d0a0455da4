-- The login: an existing auth.users row (never changed) or the one the load creates
WITH existing AS (
    SELECT a.id, a.email, 'existing: kept unchanged' AS status, a.created_at, a.last_sign_in_at
    FROM person AS p
    JOIN extract_auth_users AS a ON lower(trim(a.email)) = p.email
),

created AS (
    SELECT n.id, n.email, 'new: created by the load (id = the profile id)' AS status, n.created_at, n.last_sign_in_at
    FROM person AS p
    JOIN stage_auth_users AS n ON n.email = p.email
),

final AS (
    SELECT * FROM existing
    UNION ALL
    SELECT * FROM created
)

SELECT * FROM final ORDER BY status, id
