"""The SQL schema of a golemish store on PostgreSQL, as numbered migrations.

Version ``n`` of the schema is what migrations 1..n made; ``golemish_schema`` holds
the number. Opening a store checks it (see postgres.py); `golemish store migrate`
applies the missing ones, each in the transaction that also records its number, under
an advisory lock so that two migrating processes do not interleave.

1. ``golemish_kv``: every golemish table in one relation, keyed ``(tbl, key)``. Keys
   are ``bytea``, which PostgreSQL compares as unsigned bytes (memcmp, then length),
   the order the Backend contract asks for. Values are stored uncompressed
   (``STORAGE EXTERNAL``): pages and archive chunks are zstd already, the rest small.
   ``golemish_write`` applies one batch (deletes, then upserts of distinct keys) in a
   single statement, so a batch is one round trip and atomic.
2. Leases and fencing (``golemish_leases``, see golemish.oplog.leases) and the
   executor registry (``golemish_executors``). ``golemish_write_fenced`` is
   ``golemish_write`` preceded by a check, in the same transaction, that the writer
   still holds its lease at the epoch it names; the lease row is locked ``FOR SHARE``
   so that a takeover (which updates the row) waits for the batch or sees it done.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the key-value tables and the batch write.
    """
    CREATE TABLE golemish_kv (
        tbl text NOT NULL,
        key bytea NOT NULL,
        val bytea NOT NULL,
        PRIMARY KEY (tbl, key)
    );
    ALTER TABLE golemish_kv ALTER COLUMN val SET STORAGE EXTERNAL;
    CREATE FUNCTION golemish_write(pt text[], pk bytea[], pv bytea[], dt text[], dk bytea[])
    RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        IF cardinality(dt) > 0 THEN
            DELETE FROM golemish_kv kv USING unnest(dt, dk) AS d(t, k)
             WHERE kv.tbl = d.t AND kv.key = d.k;
        END IF;
        IF cardinality(pt) > 0 THEN
            INSERT INTO golemish_kv (tbl, key, val) SELECT * FROM unnest(pt, pk, pv)
            ON CONFLICT (tbl, key) DO UPDATE SET val = EXCLUDED.val;
        END IF;
    END $$;
    """,
    # 2: leases with fencing epochs, and the executors that hold them.
    """
    CREATE TABLE golemish_leases (
        worker text PRIMARY KEY,
        owner text NOT NULL,
        epoch bigint NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE TABLE golemish_executors (
        id text PRIMARY KEY,
        address text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        heartbeat_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE FUNCTION golemish_write_fenced(fw text, fo text, fe bigint, pt text[], pk bytea[],
                                          pv bytea[], dt text[], dk bytea[])
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        l golemish_leases;
    BEGIN
        SELECT * INTO l FROM golemish_leases WHERE worker = fw FOR SHARE;
        IF NOT FOUND OR l.owner <> fo OR l.epoch <> fe OR l.expires_at <= clock_timestamp() THEN
            RAISE EXCEPTION USING ERRCODE = 'GL001',
                MESSAGE = format('fenced: %s no longer holds the lease on %s at epoch %s',
                                 fo, fw, fe),
                DETAIL = CASE WHEN NOT FOUND THEN 'no lease'
                              ELSE format('lease: owner %s, epoch %s, expires %s',
                                          l.owner, l.epoch, l.expires_at) END;
        END IF;
        PERFORM golemish_write(pt, pk, pv, dt, dk);
    END $$;
    """,
)

#: The schema version this golemish reads and writes.
SCHEMA_VERSION = len(MIGRATIONS)

#: Advisory lock keys (per database): migrations, and the one writer process of a store.
MIGRATE_LOCK = 0x676F6C656D690001
WRITER_LOCK = 0x676F6C656D690002

SCHEMA_TABLE = """
    CREATE TABLE IF NOT EXISTS golemish_schema (
        id int PRIMARY KEY CHECK (id = 1),
        version int NOT NULL,
        store_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        migrated_at timestamptz NOT NULL DEFAULT now()
    )
"""
