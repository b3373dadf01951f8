-- `messages` partitioned by time (RANGE on ts), so that retention drops whole partitions instead
-- of deleting rows one by one (docs/scaling.md, "Retention and partitions").
--
-- Uniqueness: a primary key on a partitioned table must contain the partition key, so
-- `message_id` alone can no longer be unique on `messages`. The narrow, unpartitioned
-- `message_ids` holds every stored id and its ts; the worker inserts there first, in the same
-- statement as the row (ingest-worker/src/sql/store_batch.sql), and only the ids that insert
-- really added get a row in `messages`: a re-send is stored once, the first version winning,
-- whatever its ts. Retention removes an id together with its row.
--
-- `messages` has no primary key of its own: `(ts, message_id)` is unique through `message_ids`
-- already, and a unique index would have to be built over the existing rows here, under this
-- migration's lock (minutes at a hundred million rows), where the plain index it replaces can be
-- attached as it is.
--
-- Partitions: `messages_p<YYYYMMDD>` (the UTC start of its range) for each interval
-- (PARTITION_INTERVAL), `messages_default` for rows outside every range, and on a database that
-- already held messages, `messages_legacy`: the table as it was, attached whole from MINVALUE to
-- the end of the current month, which retention drops whole once that end has expired. The
-- worker creates the partitions, at start and ahead of time, with its own PARTITION_INTERVAL
-- (ensure_message_partitions below, under an advisory lock); this migration creates none, and
-- rows stored before the worker's first check land in the default partition, from where they are
-- moved into their partition when it is created.
--
-- Locks (docs/operations.md has the measurements): the copy of the ids into message_ids runs
-- under SHARE (writers wait, readers go on); the rest under ACCESS EXCLUSIVE on the old table,
-- including one scan of it by ATTACH PARTITION to check its range. Workers of the previous
-- version must be stopped first: their `ON CONFLICT (message_id)` no longer has a unique index
-- to use, so every batch fails and is retried until they are replaced.

SET LOCAL TimeZone = 'UTC';

LOCK TABLE messages IN SHARE MODE;

CREATE TABLE message_ids (
    message_id text        NOT NULL,
    ts         timestamptz NOT NULL
);
INSERT INTO message_ids (message_id, ts) SELECT message_id, ts FROM messages;
-- Built after the copy: one sort instead of a hundred million index insertions.
ALTER TABLE message_ids ADD CONSTRAINT message_ids_pkey PRIMARY KEY (message_id);

LOCK TABLE messages IN ACCESS EXCLUSIVE MODE;

ALTER TABLE messages RENAME TO messages_legacy;
ALTER TABLE messages_legacy DROP CONSTRAINT messages_pkey;
ALTER INDEX IF EXISTS messages_ts_id_idx RENAME TO messages_legacy_ts_id_idx;
ALTER INDEX IF EXISTS messages_from_ts_id_idx RENAME TO messages_legacy_from_ts_id_idx;
ALTER INDEX IF EXISTS messages_to_ts_id_idx RENAME TO messages_legacy_to_ts_id_idx;
ALTER INDEX IF EXISTS messages_text_trgm_idx RENAME TO messages_legacy_text_trgm_idx;

-- The same columns in the same order, so a partition's rows can move with SELECT *.
CREATE TABLE messages (
    message_id  text        NOT NULL,
    from_msisdn text        NOT NULL,
    to_msisdn   text        NOT NULL,
    ts          timestamptz NOT NULL,
    ts_raw      text        NOT NULL,
    text        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    stream_seq  bigint,
    msg_type    text
) PARTITION BY RANGE (ts);

-- Defined on the parent, so every partition has them; the legacy table's own indexes of the same
-- definition are attached as they are, without a build.
CREATE INDEX messages_ts_id_idx ON messages (ts, message_id);
CREATE INDEX messages_from_ts_id_idx ON messages (from_msisdn, ts, message_id);
CREATE INDEX messages_to_ts_id_idx ON messages (to_msisdn, ts, message_id);

CREATE TABLE messages_default PARTITION OF messages DEFAULT;

-- The partitions of messages and their ranges (NULL: MINVALUE / MAXVALUE), read from the catalog.
CREATE FUNCTION message_partitions()
RETURNS TABLE (name text, lower_bound timestamptz, upper_bound timestamptz, is_default boolean)
LANGUAGE sql STABLE SET TimeZone = 'UTC' AS $$
    SELECT c.relname::text,
           substring(b FROM 'FROM \(''([^'']*)''\)')::timestamptz,
           substring(b FROM 'TO \(''([^'']*)''\)')::timestamptz,
           b = 'DEFAULT'
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL pg_get_expr(c.relpartbound, c.oid) AS b
    WHERE i.inhparent = 'messages'::regclass
$$;

-- The advisory lock that serialises changes to the partitions of messages for the rest of the
-- transaction: their creation here and their drop by retention (ingest-worker/src/retention.rs).
-- `wait` false: returns false at once when another transaction holds it.
CREATE FUNCTION lock_message_partitions(wait boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    lock_key constant bigint := 8097879449299872111;  -- "partitio"
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(lock_key);
        RETURN true;
    END IF;
    RETURN pg_try_advisory_xact_lock(lock_key);
END
$$;

-- Creates the partition of the interval holding now() and the next `ahead` ones that do not
-- exist yet, each clipped to the gap between existing partitions (after a change of
-- PARTITION_INTERVAL the old ranges stay as they are). Returns the names created. Takes the
-- partition lock (lock_message_partitions) for the transaction, so workers create each
-- partition once and never while retention drops one; when another transaction holds it, does
-- nothing and returns nothing, rather than keep a connection waiting through a partition drop
-- (the partitions ahead give the next check plenty of time).
--
-- Locks in Postgres 15: CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE on `messages`
-- (blocking every reader and writer until commit), so the partition is created on its own and
-- then attached. ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on `messages` (readers and writers
-- go on), ACCESS EXCLUSIVE on the new, empty table, and ACCESS EXCLUSIVE on the default
-- partition, which it scans to check that no row there belongs to the new range. The default
-- partition holds only outliers, so the scan and the lock are short.
--
-- Rows already in the default partition for a new range (ts ahead of the partitions, e.g. a
-- sender's clock) are moved into the new table first, in the same transaction. Then only, the
-- function takes ACCESS EXCLUSIVE on `messages` before anything else: a query planned with the
-- partitions as they were before the commit and run with a snapshot taken after it would find
-- such a row in neither place. The default partition is locked before it is looked at again, so
-- no row can arrive in between; one that arrived after the first look, when `messages` was not
-- locked, fails this attempt, and the next (the worker retries) locks it. `messages` first, then
-- the default partition, for all the partitions created in one call: the order in which readers
-- and writers lock them too.
CREATE FUNCTION ensure_message_partitions(interval_name text, ahead integer)
RETURNS SETOF text
LANGUAGE plpgsql SET TimeZone = 'UTC' AS $$
DECLARE
    step interval := CASE interval_name
        WHEN 'day' THEN interval '1 day'
        WHEN 'week' THEN interval '1 week'
        WHEN 'month' THEN interval '1 month'
    END;
    lo timestamptz;
    hi timestamptz;
    next_lo timestamptz;
    partition_name text;
    moving boolean;
BEGIN
    IF step IS NULL THEN
        RAISE EXCEPTION 'unknown partition interval: %', interval_name;
    END IF;
    IF NOT lock_message_partitions(false) THEN
        RETURN;
    END IF;
    moving := EXISTS (
        SELECT 1 FROM messages_default
        WHERE ts >= date_trunc(interval_name, now())
          AND ts < date_trunc(interval_name, now()) + step * (ahead + 1)
    );
    IF moving THEN
        LOCK TABLE messages IN ACCESS EXCLUSIVE MODE;
    END IF;
    FOR i IN 0..ahead LOOP
        lo := date_trunc(interval_name, now()) + step * i;
        hi := lo + step;
        LOOP
            SELECT p.upper_bound INTO next_lo FROM message_partitions() p
            WHERE NOT p.is_default
              AND (p.lower_bound IS NULL OR p.lower_bound <= lo)
              AND (p.upper_bound IS NULL OR p.upper_bound > lo);
            EXIT WHEN NOT FOUND;
            lo := coalesce(next_lo, 'infinity');
        END LOOP;
        SELECT least(hi, min(p.lower_bound)) INTO hi FROM message_partitions() p
        WHERE NOT p.is_default AND p.lower_bound > lo;
        CONTINUE WHEN lo >= hi;
        partition_name := 'messages_p' || to_char(lo, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(partition_name) IS NOT NULL;
        LOCK TABLE messages_default IN ACCESS EXCLUSIVE MODE;
        IF NOT moving AND EXISTS (SELECT 1 FROM messages_default WHERE ts >= lo AND ts < hi) THEN
            RAISE EXCEPTION 'rows for % arrived in the default partition meanwhile; try again',
                partition_name;
        END IF;
        EXECUTE format('CREATE TABLE %I (LIKE messages INCLUDING DEFAULTS)', partition_name);
        EXECUTE format(
            'WITH moved AS (DELETE FROM messages_default WHERE ts >= $1 AND ts < $2 RETURNING *) '
            'INSERT INTO %I SELECT * FROM moved', partition_name)
            USING lo, hi;
        EXECUTE format('ALTER TABLE messages ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       partition_name, lo, hi);
        RETURN NEXT partition_name;
    END LOOP;
END
$$;

-- Retention retires an expired partition in two steps (ingest-worker/src/retention.rs): one
-- transaction closes it to writers, takes its rows out of message_ids and the aggregates, and
-- empties it; a second drops the empty table. Each function refuses anything but a partition of
-- messages other than the default one.
--
-- Why not DROP (or DETACH) in the first transaction: both take ACCESS EXCLUSIVE on `messages`,
-- which would have to be held, or waited for while holding the aggregates' rows, for as long as
-- the partition's rows take to count. SHARE on the partition alone keeps out only the writers of
-- that partition (a late message dated inside an expired range), while every other writer and
-- every reader goes on; TRUNCATE then takes ACCESS EXCLUSIVE on that partition alone, for a
-- moment, whatever its size. The DROP of the emptied table is a catalog change.
CREATE FUNCTION check_message_partition(partition_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM message_partitions() p
                   WHERE p.name = partition_name AND NOT p.is_default) THEN
        RAISE EXCEPTION '% is not a partition of messages', partition_name;
    END IF;
END
$$;

CREATE FUNCTION close_message_partition(partition_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM check_message_partition(partition_name);
    EXECUTE format('LOCK TABLE %I IN SHARE MODE', partition_name);
END
$$;

CREATE FUNCTION empty_message_partition(partition_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM check_message_partition(partition_name);
    EXECUTE format('TRUNCATE %I', partition_name);
END
$$;

-- Returns false, and drops nothing, when a row arrived in the partition since it was emptied (a
-- late message dated inside the expired range, written between the two transactions): the next
-- pass counts and empties it again. NULL when the table is gone already (another worker's pass
-- dropped it). The ACCESS EXCLUSIVE lock on messages (and so on each
-- partition) is taken before the look, so no row can arrive between the look and the drop.
CREATE FUNCTION drop_message_partition(partition_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    refilled boolean;
BEGIN
    LOCK TABLE messages IN ACCESS EXCLUSIVE MODE;
    IF to_regclass(partition_name) IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM check_message_partition(partition_name);
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', partition_name) INTO refilled;
    IF refilled THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE %I', partition_name);
    RETURN true;
END
$$;

DO $$
DECLARE
    legacy_end timestamptz := date_trunc('month', now()) + interval '1 month';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM messages_legacy) THEN
        DROP TABLE messages_legacy;
        -- The trigram index as migration 20261128000004_read_api.sql made it (SEARCH_INDEX then
        -- keeps it or drops it, shared/src/search_index).
        CREATE INDEX messages_text_trgm_idx ON messages USING gin (text gin_trgm_ops);
        RETURN;
    END IF;
    -- An index left INVALID by an interrupted build would not be attached: it goes, and
    -- SEARCH_INDEX builds it again partition by partition.
    IF EXISTS (SELECT 1 FROM pg_index
               WHERE indexrelid = to_regclass('messages_legacy_text_trgm_idx') AND indisvalid) THEN
        CREATE INDEX messages_text_trgm_idx ON messages USING gin (text gin_trgm_ops);
    ELSE
        DROP INDEX IF EXISTS messages_legacy_text_trgm_idx;
    END IF;
    -- Rows dated after the legacy range (a sender's clock ahead) go to the default partition,
    -- from where ensure_message_partitions moves them into their partition once it exists.
    WITH moved AS (DELETE FROM messages_legacy WHERE ts >= legacy_end RETURNING *)
    INSERT INTO messages SELECT * FROM moved;
    EXECUTE format('ALTER TABLE messages ATTACH PARTITION messages_legacy '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', legacy_end);
END
$$;
