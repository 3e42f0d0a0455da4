-- auth_identities: one auth.identities row per new auth user: provider 'email',
-- provider_id = the user id as text, identity_data {"sub": id, "email": email,
-- "email_verified": true, "phone_verified": false}; id = uuid_v5('identity:' || user id).
-- generated: email
WITH source AS (
    SELECT * FROM auth_users
),

final AS (
    SELECT
        s.id AS provider_id,
        s.id AS user_id,
        json_object('sub', s.id, 'email', s.email, 'email_verified', true, 'phone_verified', false) AS identity_data,
        'email' AS provider,
        CAST(NULL AS TIMESTAMP) AS last_sign_in_at,
        s.created_at,
        s.updated_at,
        uuid_v5('identity:' || s.id) AS id
    FROM source AS s
)

SELECT * FROM final
