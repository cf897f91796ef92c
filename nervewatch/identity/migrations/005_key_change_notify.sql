-- Key changes reach every process's key cache at once: each change that decides whether a key
-- works (revoke, rotation, a new expiry or scopes, a new or deleted key) notifies the channel
-- `nervewatch_identity_keys` with the key id, inside the changing transaction, so the notification
-- is sent exactly when the change commits, whoever made it. Every process LISTENs and evicts the
-- key (nervewatch.identity.store). `last_used_at` updates do not notify.
CREATE FUNCTION identity.notify_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nervewatch_identity_keys', CASE WHEN TG_OP = 'INSERT' THEN NEW.key_id ELSE OLD.key_id END);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_notify_update AFTER UPDATE ON identity.api_keys FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.scopes IS DISTINCT FROM NEW.scopes
          OR OLD.key_hash IS DISTINCT FROM NEW.key_hash
          OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION identity.notify_key_change();

CREATE TRIGGER api_keys_notify_insert_delete AFTER INSERT OR DELETE ON identity.api_keys FOR EACH ROW
    EXECUTE FUNCTION identity.notify_key_change();
