-- An erasure keeps the audit trail: the rows that name an erased customer are
-- pseudonymised (their identifiers replaced by the erasure's pseudonym,
-- "erasure:<erasure id>") instead of deleted, so "alice blocked X at 10:02 from
-- 10.0.0.7" stays traceable without saying who X was.
--
-- The audit log accepts exactly one kind of rewrite: the one `audit_log_pseudonymise`
-- performs, which may change `target` and `details` only, and only to write that
-- pseudonym in; who, what, when and from where never change. DELETE and TRUNCATE are
-- refused always (before this migration an erasure deleted rows, and nothing stopped
-- anyone else from doing so either).

-- `value` with every identifier replaced by the pseudonym; longer identifiers first,
-- so one that contains another is replaced whole.
CREATE FUNCTION audit_pseudonymised_text(value text, identifiers text[], pseudonym text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    identifier text;
BEGIN
    IF value IS NULL THEN
        RETURN NULL;
    END IF;
    FOREACH identifier IN ARRAY identifiers LOOP
        value := replace(value, identifier, pseudonym);
    END LOOP;
    RETURN value;
END;
$$;

-- The same through a JSON document: keys and string values, and numbers that held an
-- identifier (a phone number stored as a number becomes the pseudonym's text). Done
-- on the parsed document rather than on its text, so the result is always valid JSON.
CREATE FUNCTION audit_pseudonymised_json(value jsonb, identifiers text[], pseudonym text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    result jsonb;
    replaced text;
BEGIN
    CASE jsonb_typeof(value)
        WHEN 'object' THEN
            SELECT coalesce(
                jsonb_object_agg(
                    audit_pseudonymised_text(entry.key, identifiers, pseudonym),
                    audit_pseudonymised_json(entry.item, identifiers, pseudonym)
                ),
                '{}'::jsonb
            ) INTO result
            FROM jsonb_each(value) AS entry(key, item);
        WHEN 'array' THEN
            SELECT coalesce(
                jsonb_agg(
                    audit_pseudonymised_json(entry.item, identifiers, pseudonym)
                    ORDER BY entry.position
                ),
                '[]'::jsonb
            ) INTO result
            FROM jsonb_array_elements(value) WITH ORDINALITY AS entry(item, position);
        WHEN 'string' THEN
            result := to_jsonb(audit_pseudonymised_text(value #>> '{}', identifiers, pseudonym));
        WHEN 'number' THEN
            replaced := audit_pseudonymised_text(value::text, identifiers, pseudonym);
            result := CASE WHEN replaced = value::text THEN value ELSE to_jsonb(replaced) END;
        ELSE
            result := value;
    END CASE;
    RETURN result;
END;
$$;

-- The narrow path: rewrite every row whose target or details hold one of the
-- identifiers (each at least 5 characters: a wa_id, a user id, a conversation id —
-- never a fragment that would blank half the log), writing `pseudonym`
-- ("erasure:<uuid>") in their place. Returns how many rows were rewritten. The
-- transaction-local setting it raises is what the guard below lets through.
CREATE FUNCTION audit_log_pseudonymise(identifiers text[], pseudonym text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    ordered text[];
    rewritten integer;
BEGIN
    IF pseudonym IS NULL OR pseudonym !~ '^erasure:[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$' THEN
        RAISE EXCEPTION 'audit pseudonym must be erasure:<uuid>, not %', pseudonym;
    END IF;
    IF identifiers IS NULL OR cardinality(identifiers) = 0
       OR EXISTS (SELECT 1 FROM unnest(identifiers) AS i WHERE i IS NULL OR length(i) < 5) THEN
        RAISE EXCEPTION 'every identifier to pseudonymise must have at least 5 characters';
    END IF;
    SELECT array_agg(i ORDER BY length(i) DESC, i) INTO ordered FROM unnest(identifiers) AS i;
    PERFORM set_config('wa_agent.audit_pseudonym', pseudonym, true);
    UPDATE audit_log
       SET target = audit_pseudonymised_text(target, ordered, pseudonym),
           details = audit_pseudonymised_json(details, ordered, pseudonym)
     WHERE EXISTS (
         SELECT 1 FROM unnest(ordered) AS i
          WHERE strpos(coalesce(target, ''), i) > 0 OR strpos(details::text, i) > 0
     );
    GET DIAGNOSTICS rewritten = ROW_COUNT;
    PERFORM set_config('wa_agent.audit_pseudonym', '', true);
    RETURN rewritten;
END;
$$;

-- Refuses every UPDATE but a pseudonymisation in progress, and within one refuses any
-- change to who, what, when and where, or a new target or details that do not carry
-- the pseudonym. Refuses DELETE and TRUNCATE outright.
CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pseudonym text := coalesce(current_setting('wa_agent.audit_pseudonym', true), '');
BEGIN
    IF TG_OP = 'UPDATE' AND pseudonym <> '' THEN  -- NEW and OLD exist only here
        IF NEW.id = OLD.id
           AND NEW.occurred_at = OLD.occurred_at
           AND NEW.actor = OLD.actor
           AND NEW.action = OLD.action
           AND NEW.remote_addr IS NOT DISTINCT FROM OLD.remote_addr
           AND (NEW.target IS NOT DISTINCT FROM OLD.target OR strpos(NEW.target, pseudonym) > 0)
           AND (NEW.details = OLD.details OR strpos(NEW.details::text, pseudonym) > 0) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_log rows are never rewritten or deleted (% refused); an erasure pseudonymises them through audit_log_pseudonymise()', TG_OP;
END;
$$;

DROP TRIGGER audit_log_no_update ON audit_log;
DROP FUNCTION audit_log_no_rewrite();
CREATE TRIGGER audit_log_guard_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
CREATE TRIGGER audit_log_guard_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
CREATE TRIGGER audit_log_guard_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_guard();
