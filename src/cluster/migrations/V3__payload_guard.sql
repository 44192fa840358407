-- eas-relay cluster schema, version 3: the payload a node reads. Rows of
-- `changes` and of the four tables are hostile to the nodes (anybody who
-- can write the database can write them): a node reads a payload as text,
-- only up to 64 KiB (a row's state is a few hundred bytes), and parses it
-- row by row, so that one huge or unparsable payload is one skipped row,
-- not a node out of memory or a feed stopped for good
-- (src/cluster/changes.rs). The compressed size is checked first (cheap);
-- the text's length too, since jsonb compresses: a 200 MB payload of one
-- repeated value is small on disk.
CREATE FUNCTION eas_payload(p jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p IS NULL THEN 'null'
        WHEN pg_column_size(p) <= 65536 AND octet_length(p::text) <= 65536 THEN p::text
    END
$$;
