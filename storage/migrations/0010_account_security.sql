-- Accounts & security: an append-only audit log of security-relevant account changes
-- (admin role grants/revocations, 2FA on/off, recovery codes, password and email changes).
-- user_id has no foreign key on purpose: the history outlives the account.
CREATE TABLE security_audit (
    id         bigserial PRIMARY KEY,
    user_id    uuid,
    actor      text NOT NULL,           -- 'self', 'cli:<os user>@<host>', ...
    action     text NOT NULL,           -- dotted: 'admin.granted', '2fa.enabled', ...
    details    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX security_audit_user ON security_audit (user_id, id);
CREATE INDEX security_audit_action ON security_audit (action, created_at);
