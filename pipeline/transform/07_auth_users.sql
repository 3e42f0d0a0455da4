-- auth_users: the NEW auth.users rows, one per profile whose email has no login yet,
-- written the way Supabase's auth server writes a user (anything else breaks login):
--   * instance_id 00000000-0000-0000-0000-000000000000, aud and role 'authenticated';
--   * the token columns and email_change '' (NULL makes every login fail with
--     "converting NULL to string is unsupported");
--   * encrypted_password '' (they sign in by magic link or password reset; a placeholder
--     hash fails bcrypt);
--   * email_confirmed_at and created_at = first registration or payment, updated_at = the
--     extract's snapshot time; raw_app_meta_data {"provider":"email","providers":["email"]};
--     raw_user_meta_data the names;
--   * phone NULL (UNIQUE in auth.users; phones live in the profile).
-- Existing auth users are never changed, so they are not here.
-- generated: confirmed_at
WITH source AS (
    SELECT p.*
    FROM profiles AS p
    WHERE p.email IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM extract_auth_users AS a WHERE a.id = p.id)
        AND NOT EXISTS (SELECT 1 FROM extract_auth_users AS a WHERE lower(trim(a.email)) = p.email)
),

final AS (
    SELECT
        '00000000-0000-0000-0000-000000000000' AS instance_id,
        s.id,
        'authenticated' AS aud,
        'authenticated' AS role,
        s.email,
        '' AS encrypted_password,
        s.created_at AS email_confirmed_at,
        CAST(NULL AS TIMESTAMP) AS invited_at,
        '' AS confirmation_token,
        CAST(NULL AS TIMESTAMP) AS confirmation_sent_at,
        '' AS recovery_token,
        CAST(NULL AS TIMESTAMP) AS recovery_sent_at,
        '' AS email_change_token_new,
        '' AS email_change,
        CAST(NULL AS TIMESTAMP) AS email_change_sent_at,
        CAST(NULL AS TIMESTAMP) AS last_sign_in_at,
        '{"provider":"email","providers":["email"]}' AS raw_app_meta_data,
        json_object('first_name', s.first_name, 'last_name', s.last_name) AS raw_user_meta_data,
        CAST(NULL AS BOOLEAN) AS is_super_admin,
        s.created_at,
        cfg.now_utc AS updated_at,
        CAST(NULL AS VARCHAR) AS phone,
        CAST(NULL AS TIMESTAMP) AS phone_confirmed_at,
        '' AS phone_change,
        '' AS phone_change_token,
        CAST(NULL AS TIMESTAMP) AS phone_change_sent_at,
        '' AS email_change_token_current,
        CAST(0 AS SMALLINT) AS email_change_confirm_status,
        CAST(NULL AS TIMESTAMP) AS banned_until,
        '' AS reauthentication_token,
        CAST(NULL AS TIMESTAMP) AS reauthentication_sent_at,
        false AS is_sso_user,
        CAST(NULL AS TIMESTAMP) AS deleted_at,
        false AS is_anonymous
    FROM config AS cfg
    CROSS JOIN source AS s
)

SELECT * FROM final
