-- The transparency log (docs/transparency.md): per tenant, an RFC 6962 Merkle tree over
-- the tenant's events in commit order, kept up to date by the tree builder
-- (src/transparency/builder.rs), and signed tree heads in the C2SP tlog-checkpoint
-- format. Proofs are computed from these tables; the events themselves are untouched.

-- Where the builder stands in catch-up order, like a projector's checkpoint: every event
-- up to and including (last_transaction_id, last_position) has its leaf. The one row is
-- locked FOR UPDATE by the builder's transaction: the lease that lets one instance at a
-- time append leaves or sign heads.
CREATE TABLE merkle_builder (
    id                  boolean     PRIMARY KEY DEFAULT true CHECK (id),
    last_transaction_id xid8        NOT NULL DEFAULT '0',
    last_position       bigint      NOT NULL DEFAULT 0,
    leaves_appended     bigint      NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO merkle_builder DEFAULT VALUES;
REVOKE ALL ON merkle_builder FROM PUBLIC;
GRANT SELECT ON merkle_builder TO chronicle_app;
GRANT SELECT, UPDATE ON merkle_builder TO chronicle_worker;

-- One row per tenant: the tree's size and root now, and the newest signed head's size.
CREATE TABLE merkle_trees (
    tenant_id   uuid        PRIMARY KEY,
    size        bigint      NOT NULL CHECK (size >= 1),
    root        bytea       NOT NULL CHECK (octet_length(root) = 32),
    signed_size bigint      NOT NULL DEFAULT 0 CHECK (signed_size BETWEEN 0 AND size),
    signed_at   timestamptz,
    updated_at  timestamptz NOT NULL
);

-- Which event each leaf is: leaf `leaf_index` of the tenant's tree is the event at
-- `global_position`. Unique both ways, so no event can get two leaves.
CREATE TABLE merkle_leaves (
    tenant_id       uuid   NOT NULL,
    leaf_index      bigint NOT NULL CHECK (leaf_index >= 0),
    global_position bigint NOT NULL UNIQUE,
    PRIMARY KEY (tenant_id, leaf_index)
);

-- Every hash the tree stores (leaf hashes and the roots of complete subtrees), in the
-- dense order of Crosby and Wallach that Go's sumdb tlog uses (`stored_hash_index`),
-- 32 hashes per row: row `tile` holds indexes [32 * tile, 32 * tile + 32). Appending a
-- leaf appends hashes at the end, so only a tenant's last row ever grows (the trigger
-- below refuses any other change). A 1 KiB row stays inline (no TOAST).
CREATE TABLE merkle_hash_tiles (
    tenant_id uuid   NOT NULL,
    tile      bigint NOT NULL CHECK (tile >= 0),
    hashes    bytea  NOT NULL
        CHECK (octet_length(hashes) BETWEEN 32 AND 1024 AND octet_length(hashes) % 32 = 0),
    PRIMARY KEY (tenant_id, tile)
);

-- The sign pass looks for trees that grew since their newest signed head.
CREATE INDEX merkle_trees_unsigned ON merkle_trees (tenant_id) WHERE size > signed_size;

-- Signed tree heads: the C2SP signed note (tlog-checkpoint text and an Ed25519
-- signature line) exactly as handed out. One per (tenant, size): a log must never sign
-- two different roots for one size.
CREATE TABLE merkle_tree_heads (
    tenant_id uuid        NOT NULL,
    tree_size bigint      NOT NULL CHECK (tree_size >= 1),
    root      bytea       NOT NULL CHECK (octet_length(root) = 32),
    note      text        NOT NULL,
    signed_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, tree_size)
);

-- Leaves and signed heads are evidence: append-only like the events.
CREATE TRIGGER merkle_leaves_no_update_delete BEFORE UPDATE OR DELETE ON merkle_leaves
  FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER merkle_leaves_no_truncate BEFORE TRUNCATE ON merkle_leaves
  FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
CREATE TRIGGER merkle_tree_heads_no_update_delete BEFORE UPDATE OR DELETE ON merkle_tree_heads
  FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER merkle_tree_heads_no_truncate BEFORE TRUNCATE ON merkle_tree_heads
  FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- A tile may only grow at its end: its existing hashes never change.
CREATE FUNCTION merkle_hash_tiles_only_grow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'UPDATE'
     OR NEW.tenant_id <> OLD.tenant_id OR NEW.tile <> OLD.tile
     OR octet_length(NEW.hashes) < octet_length(OLD.hashes)
     OR substring(NEW.hashes FROM 1 FOR octet_length(OLD.hashes)) <> OLD.hashes THEN
    RAISE EXCEPTION 'stored tree hashes are append-only (% refused)', TG_OP
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER merkle_hash_tiles_only_grow BEFORE UPDATE OR DELETE ON merkle_hash_tiles
  FOR EACH ROW EXECUTE FUNCTION merkle_hash_tiles_only_grow();
CREATE TRIGGER merkle_hash_tiles_no_truncate BEFORE TRUNCATE ON merkle_hash_tiles
  FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- Tenant-scoped: the API (proofs for auditors) reads one tenant's rows under RLS; the
-- worker (the builder) writes for every tenant.
SELECT chronicle_protect_read_table(t)
  FROM unnest(ARRAY['merkle_trees', 'merkle_leaves', 'merkle_hash_tiles',
                    'merkle_tree_heads']::regclass[]) AS t;
