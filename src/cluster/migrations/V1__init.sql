-- eas-relay cluster schema, version 1: what people said (domains, static
-- aliases, chain reveals, suspensions), the DNS provisioning work, every
-- node's delivery log, the ordered change table the nodes replicate from,
-- and the nodes themselves. Applied once, under an advisory lock, by the
-- first node that starts (src/cluster/migrate.rs). Never edit a released
-- migration: add V2__… instead (a node refuses a database whose V1 differs).
--
-- Names are stored normalized (lower case, IDNA A-labels), as the relay's
-- own store keeps them; the CHECKs refuse what no node would write.

-- Alias ids: one sequence for static aliases and chain reveals, so that the
-- numeric id ImprovMX clients see is unique across both.
CREATE SEQUENCE alias_ids AS bigint;

CREATE TABLE domains (
    domain      text PRIMARY KEY
                CHECK (domain <> '' AND domain = lower(domain)),
    -- 'static': managed by the operator; 'chain': governed by the chain.
    source      text NOT NULL CHECK (source IN ('static', 'chain')),
    active      boolean NOT NULL DEFAULT true,
    -- notification_email, webhook, whitelabel, spam thresholds: the
    -- record's optional fields, as JSON so they can grow.
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE static_aliases (
    id          bigint PRIMARY KEY DEFAULT nextval('alias_ids'),
    domain      text NOT NULL REFERENCES domains (domain) ON DELETE CASCADE,
    -- The local part as matched at RCPT ('*': the catch-all).
    local       text NOT NULL CHECK (local <> ''),
    forwards    text[] NOT NULL CHECK (cardinality(forwards) >= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain, local)
);

-- What an owner revealed to activate a chain alias. Every node checks a
-- row against the chain itself (keccak256(alias | forward | signature)
-- must be the commitment on chain, signed by the name's owner) before it
-- forwards: a row here is a claim, not a proof (DESIGN.md §9).
CREATE TABLE chain_reveals (
    id           bigint PRIMARY KEY DEFAULT nextval('alias_ids'),
    domain       text NOT NULL REFERENCES domains (domain) ON DELETE CASCADE,
    sld          text NOT NULL CHECK (sld <> ''),
    tld          text NOT NULL CHECK (tld <> ''),
    -- The local part as matched at RCPT (normalized).
    local        text NOT NULL CHECK (local <> ''),
    -- The alias exactly as activated: its keccak256 is on chain.
    alias        text NOT NULL CHECK (alias <> ''),
    forward      text NOT NULL CHECK (forward <> ''),
    -- The 65-byte signature r‖s‖v, 0x-hex, exactly as sent.
    signature    text NOT NULL CHECK (signature ~ '^0x[0-9a-fA-F]{130}$'),
    -- keccak256(alias | forward | signature), 0x-hex: an index for
    -- deactivations, recomputed by every node, never trusted.
    commitment   text NOT NULL CHECK (commitment ~ '^0x[0-9a-f]{64}$'),
    -- The node that accepted the activation, and when.
    accepted_by  text NOT NULL,
    accepted_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (domain = sld || '.' || tld),
    UNIQUE (domain, local)
);
-- The watcher finds a name's aliases by (tld, sld) from chain events.
CREATE INDEX chain_reveals_name ON chain_reveals (tld, sld);

-- Aliases (static or chain) an operator suspended: they reject like unknown
-- ones until resumed. A suspension outlives a re-activation on chain.
CREATE TABLE suspensions (
    domain        text NOT NULL REFERENCES domains (domain) ON DELETE CASCADE,
    local         text NOT NULL CHECK (local <> ''),
    reason        text NOT NULL DEFAULT '',
    suspended_by  text NOT NULL,
    suspended_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, local)
);

-- Names whose DNS records are still to be written into (or removed from)
-- the zone. A node claims due rows with FOR UPDATE SKIP LOCKED, so N nodes
-- do each write once. No foreign key: a removal outlives its domain.
CREATE TABLE dns_work (
    domain      text PRIMARY KEY CHECK (domain <> '' AND domain = lower(domain)),
    kind        text NOT NULL CHECK (kind IN ('provision', 'remove')),
    queued_at   timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_at     timestamptz NOT NULL DEFAULT now(),
    last_error  text NOT NULL DEFAULT '',
    -- The last failure was in the labels' content, not the zone being down.
    permanent   boolean NOT NULL DEFAULT false
);
CREATE INDEX dns_work_due ON dns_work (next_at);

-- Every node's delivery log. (node_id, id) is the node's own time-ordered
-- log id: a row buffered on the node while the database was away and
-- flushed twice is still one row (INSERT … ON CONFLICT DO NOTHING).
CREATE TABLE delivery_log (
    node_id     text NOT NULL,
    id          bigint NOT NULL,
    time        timestamptz NOT NULL,
    -- The alias's domain: what the log is listed by.
    domain      text NOT NULL,
    queue_id    bigint NOT NULL,
    sender      text NOT NULL,
    alias       text NOT NULL,
    recipient   text NOT NULL,
    forward     text NOT NULL,
    subject     text,
    message_id  text,
    outcome     text NOT NULL,
    code        integer NOT NULL CHECK (code BETWEEN 0 AND 65535),
    message     text NOT NULL,
    server      text,
    -- The content scan's verdict of a refused message.
    spam        jsonb,
    PRIMARY KEY (node_id, id)
);
-- The API lists a domain's log newest first, whichever node wrote it.
CREATE INDEX delivery_log_domain_time ON delivery_log (domain, time DESC);
-- Retention sweeps delete by age.
CREATE INDEX delivery_log_time ON delivery_log (time);

-- The ordered change table: every write above also writes one row here, in
-- the same transaction, through eas_record_change(). Nodes apply rows in id
-- order from the last id they applied (LISTEN eas_changes wakes them).
CREATE TABLE changes (
    id       bigserial PRIMARY KEY,
    -- What changed: 'domain', 'alias', 'reveal', 'suspension', …
    kind     text NOT NULL CHECK (kind <> ''),
    -- Which one: the domain, or 'local@domain'.
    key      text NOT NULL,
    -- Its new state; JSON null: it was removed.
    payload  jsonb NOT NULL DEFAULT 'null'::jsonb,
    -- The node that wrote it.
    origin   text NOT NULL,
    time     timestamptz NOT NULL DEFAULT now()
);
-- Pruning of rows every node has applied goes by age.
CREATE INDEX changes_time ON changes (time);
-- Reconciliation reads one domain's changes.
CREATE INDEX changes_key ON changes (kind, key);

-- Appends a change and wakes the nodes. A bigserial id is taken at insert
-- but becomes visible at commit, so two writers could commit ids 6 then 5,
-- and a node that applied 6 would never see 5. The transaction-scoped lock
-- makes writers take ids in commit order: a node that sees id n sees every
-- committed id below n. Writes are operators' and activations' (a few a
-- second), so serializing their last step costs nothing that matters.
CREATE FUNCTION eas_record_change(p_kind text, p_key text, p_payload jsonb, p_origin text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    -- 0x6561735f63686e67: "eas_chng".
    PERFORM pg_advisory_xact_lock(7305246924098530919);
    INSERT INTO changes (kind, key, payload, origin)
    VALUES (p_kind, p_key, coalesce(p_payload, 'null'::jsonb), p_origin)
    RETURNING id INTO new_id;
    PERFORM pg_notify('eas_changes', new_id::text);
    RETURN new_id;
END
$$;

-- The nodes of the cluster, as each last reported itself (heartbeat).
CREATE TABLE nodes (
    id                 text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,64}$'),
    first_seen         timestamptz NOT NULL DEFAULT now(),
    last_seen          timestamptz NOT NULL DEFAULT now(),
    -- The last change id the node applied to its replica (lag: max(id) of
    -- changes minus this).
    applied_change_id  bigint NOT NULL DEFAULT 0 CHECK (applied_change_id >= 0),
    -- Messages in the node's own queue.
    queue_depth        bigint NOT NULL DEFAULT 0 CHECK (queue_depth >= 0),
    -- The eas-relay version it runs (rolling upgrades).
    version            text NOT NULL DEFAULT ''
);
