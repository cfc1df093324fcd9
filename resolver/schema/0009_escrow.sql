-- idnode schema, version 9: escrow deposits (registry/escrow.py, `idnode escrow export|import`).
--
-- escrow_exports lists the deposits this node wrote, so that a DIFF from feed number N names the deposit it
-- applies on (the one that ended at N). escrow_imports lists the deposits applied here, in order (n): a DIFF is
-- accepted only on top of the last one, and a deposit already applied is refused. escrow_progress holds the deposit
-- being applied (at most one), slice by slice: how many of its lines have committed, so that a killed import
-- continues after them and no line is applied twice. None of these tables is fed
-- (the change feed carries the registry's data, not the bookkeeping of copies of it).

CREATE TABLE escrow_exports (
    id         text PRIMARY KEY,
    type       text NOT NULL CHECK (type IN ('FULL', 'DIFF')),
    previous   text,
    watermark  bigint NOT NULL,
    records    bigint NOT NULL,
    sha256     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX escrow_exports_watermark_idx ON escrow_exports (watermark, created_at);

CREATE TABLE escrow_imports (
    n          bigserial PRIMARY KEY,
    id         text NOT NULL UNIQUE,
    type       text NOT NULL CHECK (type IN ('FULL', 'DIFF')),
    previous   text,
    watermark  bigint NOT NULL,
    records    bigint NOT NULL,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE escrow_progress (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    id         text NOT NULL,
    sha256     text NOT NULL,
    records    bigint NOT NULL,
    lines_done bigint NOT NULL
);
