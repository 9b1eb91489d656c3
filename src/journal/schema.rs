//! The journal's schema, as an ordered list of migrations.
//!
//! The schema version is SQLite's `PRAGMA user_version`: 0 for a new file, then the version of the last
//! migration applied. Opening a journal applies every migration above its version, each in its own
//! transaction together with the version bump, so a crash mid-migration leaves the previous version
//! intact. A file whose version is above [`LATEST`] was written by a newer program and is refused.
//! `PRAGMA application_id` marks the file as a zhengjiao journal, so another program's SQLite file is
//! refused rather than written into.
//!
//! Migrations are never edited once released; a change is a new migration at the end of the list.

use rusqlite::Connection;

/// `PRAGMA application_id` of a journal: "ZJJL" in ASCII.
pub(crate) const APPLICATION_ID: i32 = 0x5A4A_4A4C;

/// One step of the schema.
pub(crate) struct Migration {
    /// The version the file has after it.
    pub(crate) version: u32,
    /// What it adds, for the log.
    pub(crate) name: &'static str,
    /// The statements.
    pub(crate) sql: &'static str,
}

/// Every migration, in order; versions are 1, 2, ...
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "roster lines and collectors", sql: V1 },
    Migration { version: 2, name: "terminals, payments, transitions, ledger outbox, settlements", sql: V2 },
    Migration { version: 3, name: "terminal names, reversals, listing and settlement indexes", sql: V3 },
    Migration { version: 4, name: "append-only tables numbered without AUTOINCREMENT", sql: V4 },
];

/// The newest schema version this program knows: the last migration's.
pub(crate) const LATEST: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Version 1: what importing the roster and the collector register needs.
const V1: &str = "
CREATE TABLE roster_lines (
    id INTEGER PRIMARY KEY,
    serial TEXT NOT NULL,
    insurance TEXT NOT NULL CHECK (insurance IN ('pension', 'medical')),
    year INTEGER NOT NULL,
    id_number TEXT NOT NULL,
    name TEXT NOT NULL,
    amount_due_fen INTEGER CHECK (amount_due_fen IS NULL OR amount_due_fen >= 0),
    hardship TEXT NOT NULL CHECK (hardship IN ('none', 'dibao', 'tekun')),
    collection_point TEXT NOT NULL,
    street TEXT,
    community TEXT,
    content_hash TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    updated_at TEXT,
    UNIQUE (serial, insurance, year)
) STRICT;
CREATE INDEX roster_lines_by_id_number ON roster_lines (id_number);

CREATE TABLE collectors (
    id INTEGER PRIMARY KEY,
    collection_point TEXT NOT NULL,
    staff_no TEXT NOT NULL,
    no INTEGER,
    collection_point_name TEXT NOT NULL,
    name TEXT NOT NULL,
    id_number TEXT NOT NULL,
    bank_name TEXT NOT NULL,
    bank_branch TEXT NOT NULL,
    bank_account TEXT NOT NULL,
    phone TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    updated_at TEXT,
    UNIQUE (collection_point, staff_no)
) STRICT;
";

/// Version 2: the collection flow. `roster_lines.paid_by` binds a line to the one approved (or
/// forwarded) payment that paid it; a partial unique index allows at most one payment under way per
/// line; triggers make `payment_transitions` append-only.
const V2: &str = "
CREATE TABLE terminals (
    id TEXT PRIMARY KEY,
    collection_point TEXT NOT NULL,
    merchant_id TEXT,
    link TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    updated_at TEXT
) STRICT;

CREATE TABLE terminal_batches (
    terminal_id TEXT NOT NULL REFERENCES terminals (id),
    batch_no TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    settled_at TEXT,
    PRIMARY KEY (terminal_id, batch_no)
) STRICT;

CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    line_id INTEGER NOT NULL REFERENCES roster_lines (id),
    amount_fen INTEGER NOT NULL CHECK (amount_fen > 0),
    terminal_id TEXT NOT NULL REFERENCES terminals (id),
    till TEXT NOT NULL,
    operator TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('created', 'sent', 'approved', 'declined', 'unknown',
                                         'not_charged', 'forwarded', 'voided', 'refunded')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    response_code TEXT,
    response_text TEXT,
    trace TEXT,
    batch_no TEXT,
    rrn TEXT,
    auth_code TEXT,
    card_masked TEXT,
    approved_fen INTEGER
) STRICT;
CREATE INDEX payments_by_line ON payments (line_id);
CREATE INDEX payments_by_state ON payments (state);
CREATE UNIQUE INDEX payments_one_under_way_per_line ON payments (line_id)
    WHERE state IN ('created', 'sent', 'unknown');

ALTER TABLE roster_lines ADD COLUMN paid_by TEXT REFERENCES payments (id);
CREATE UNIQUE INDEX roster_lines_by_payment ON roster_lines (paid_by) WHERE paid_by IS NOT NULL;

CREATE TABLE payment_transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    at TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    response_code TEXT,
    response_text TEXT,
    trace TEXT,
    batch_no TEXT,
    rrn TEXT,
    auth_code TEXT,
    card_masked TEXT,
    amount_fen INTEGER,
    note TEXT
) STRICT;
CREATE INDEX payment_transitions_by_payment ON payment_transitions (payment_id, seq);
CREATE TRIGGER payment_transitions_no_update BEFORE UPDATE ON payment_transitions
BEGIN SELECT RAISE(ABORT, 'payment_transitions is append-only'); END;
CREATE TRIGGER payment_transitions_no_delete BEFORE DELETE ON payment_transitions
BEGIN SELECT RAISE(ABORT, 'payment_transitions is append-only'); END;

CREATE TABLE ledger_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('payment', 'reversal')),
    payment_id TEXT NOT NULL REFERENCES payments (id),
    reverses TEXT REFERENCES ledger_outbox (entry_id),
    payload TEXT NOT NULL CHECK (json_valid(payload)),
    created_at TEXT NOT NULL,
    forwarded_at TEXT,
    tax_voucher_no TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    dead_letter TEXT,
    CHECK ((kind = 'payment') = (reverses IS NULL))
) STRICT;
CREATE INDEX ledger_outbox_pending ON ledger_outbox (seq) WHERE forwarded_at IS NULL AND dead_letter IS NULL;

CREATE TABLE settlements (
    id INTEGER PRIMARY KEY,
    terminal_id TEXT NOT NULL REFERENCES terminals (id),
    batch_no TEXT NOT NULL,
    terminal_sale_count INTEGER NOT NULL,
    terminal_sale_fen INTEGER NOT NULL,
    terminal_void_count INTEGER NOT NULL,
    terminal_void_fen INTEGER NOT NULL,
    terminal_refund_count INTEGER NOT NULL,
    terminal_refund_fen INTEGER NOT NULL,
    journal_sale_count INTEGER NOT NULL,
    journal_sale_fen INTEGER NOT NULL,
    journal_void_count INTEGER NOT NULL,
    journal_void_fen INTEGER NOT NULL,
    journal_refund_count INTEGER NOT NULL,
    journal_refund_fen INTEGER NOT NULL,
    matches INTEGER NOT NULL CHECK (matches IN (0, 1)),
    at TEXT NOT NULL,
    FOREIGN KEY (terminal_id, batch_no) REFERENCES terminal_batches (terminal_id, batch_no)
) STRICT;
";

/// Version 3: terminal names (a terminal registered before is named by its id until registered again),
/// the terminal's transaction date (`txn_date`) beside the other POS data,
/// reversals (void / refund, each with its own ECR reference) with their append-only history, and the
/// indexes the listings and the settlement totals read through. A partial unique index allows at most
/// one reversal per payment that is under way or approved.
const V3: &str = "
ALTER TABLE terminals ADD COLUMN name TEXT;
UPDATE terminals SET name = id WHERE name IS NULL;

ALTER TABLE payments ADD COLUMN txn_date TEXT;
ALTER TABLE payment_transitions ADD COLUMN txn_date TEXT;

CREATE INDEX payments_by_created_at ON payments (created_at);
CREATE INDEX payments_by_terminal_batch ON payments (terminal_id, batch_no);

CREATE TABLE reversals (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    kind TEXT NOT NULL CHECK (kind IN ('void', 'refund')),
    amount_fen INTEGER NOT NULL CHECK (amount_fen > 0),
    terminal_id TEXT NOT NULL REFERENCES terminals (id),
    operator TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('created', 'sent', 'approved', 'declined', 'unknown', 'not_charged')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    response_code TEXT,
    response_text TEXT,
    trace TEXT,
    batch_no TEXT,
    rrn TEXT,
    auth_code TEXT,
    card_masked TEXT,
    approved_fen INTEGER,
    txn_date TEXT
) STRICT;
CREATE INDEX reversals_by_payment ON reversals (payment_id, created_at);
CREATE INDEX reversals_by_state ON reversals (state);
CREATE INDEX reversals_by_terminal_batch ON reversals (terminal_id, batch_no);
CREATE UNIQUE INDEX reversals_one_open_per_payment ON reversals (payment_id)
    WHERE state IN ('created', 'sent', 'unknown', 'approved');

CREATE TABLE reversal_transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    reversal_id TEXT NOT NULL REFERENCES reversals (id),
    at TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    response_code TEXT,
    response_text TEXT,
    trace TEXT,
    batch_no TEXT,
    rrn TEXT,
    auth_code TEXT,
    card_masked TEXT,
    amount_fen INTEGER,
    note TEXT,
    txn_date TEXT
) STRICT;
CREATE INDEX reversal_transitions_by_reversal ON reversal_transitions (reversal_id, seq);
CREATE TRIGGER reversal_transitions_no_update BEFORE UPDATE ON reversal_transitions
BEGIN SELECT RAISE(ABORT, 'reversal_transitions is append-only'); END;
CREATE TRIGGER reversal_transitions_no_delete BEFORE DELETE ON reversal_transitions
BEGIN SELECT RAISE(ABORT, 'reversal_transitions is append-only'); END;

CREATE INDEX settlements_by_terminal ON settlements (terminal_id, id);
";

/// Version 4: the histories and the ledger outbox numbered by their rowid alone, without AUTOINCREMENT,
/// which read and rewrote `sqlite_sequence` on every insert (five times a payment; a fifth of the load
/// benchmark's throughput). Nothing is ever deleted from these tables (the histories refuse it; the
/// outbox keeps every entry), so a new row's number is still one more than any before it: the order the
/// forwarder and the histories read by is unchanged. Each table is copied with its numbers, dropped and
/// its copy renamed; the outbox copy's reference to itself names the copy, which the rename carries
/// over, so no foreign key points at the table being dropped.
const V4: &str = "
CREATE TABLE payment_transitions_v4 (
    seq INTEGER PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    at TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    response_code TEXT,
    response_text TEXT,
    trace TEXT,
    batch_no TEXT,
    rrn TEXT,
    auth_code TEXT,
    card_masked TEXT,
    amount_fen INTEGER,
    note TEXT,
    txn_date TEXT
) STRICT;
INSERT INTO payment_transitions_v4 (seq, payment_id, at, from_state, to_state, response_code, response_text,
    trace, batch_no, rrn, auth_code, card_masked, amount_fen, note, txn_date)
SELECT seq, payment_id, at, from_state, to_state, response_code, response_text, trace, batch_no, rrn,
    auth_code, card_masked, amount_fen, note, txn_date
FROM payment_transitions ORDER BY seq;
DROP TABLE payment_transitions;
ALTER TABLE payment_transitions_v4 RENAME TO payment_transitions;
CREATE INDEX payment_transitions_by_payment ON payment_transitions (payment_id, seq);
CREATE TRIGGER payment_transitions_no_update BEFORE UPDATE ON payment_transitions
BEGIN SELECT RAISE(ABORT, 'payment_transitions is append-only'); END;
CREATE TRIGGER payment_transitions_no_delete BEFORE DELETE ON payment_transitions
BEGIN SELECT RAISE(ABORT, 'payment_transitions is append-only'); END;

CREATE TABLE reversal_transitions_v4 (
    seq INTEGER PRIMARY KEY,
    reversal_id TEXT NOT NULL REFERENCES reversals (id),
    at TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    response_code TEXT,
    response_text TEXT,
    trace TEXT,
    batch_no TEXT,
    rrn TEXT,
    auth_code TEXT,
    card_masked TEXT,
    amount_fen INTEGER,
    note TEXT,
    txn_date TEXT
) STRICT;
INSERT INTO reversal_transitions_v4 (seq, reversal_id, at, from_state, to_state, response_code, response_text,
    trace, batch_no, rrn, auth_code, card_masked, amount_fen, note, txn_date)
SELECT seq, reversal_id, at, from_state, to_state, response_code, response_text, trace, batch_no, rrn,
    auth_code, card_masked, amount_fen, note, txn_date
FROM reversal_transitions ORDER BY seq;
DROP TABLE reversal_transitions;
ALTER TABLE reversal_transitions_v4 RENAME TO reversal_transitions;
CREATE INDEX reversal_transitions_by_reversal ON reversal_transitions (reversal_id, seq);
CREATE TRIGGER reversal_transitions_no_update BEFORE UPDATE ON reversal_transitions
BEGIN SELECT RAISE(ABORT, 'reversal_transitions is append-only'); END;
CREATE TRIGGER reversal_transitions_no_delete BEFORE DELETE ON reversal_transitions
BEGIN SELECT RAISE(ABORT, 'reversal_transitions is append-only'); END;

CREATE TABLE ledger_outbox_v4 (
    seq INTEGER PRIMARY KEY,
    entry_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('payment', 'reversal')),
    payment_id TEXT NOT NULL REFERENCES payments (id),
    reverses TEXT REFERENCES ledger_outbox_v4 (entry_id),
    payload TEXT NOT NULL CHECK (json_valid(payload)),
    created_at TEXT NOT NULL,
    forwarded_at TEXT,
    tax_voucher_no TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    dead_letter TEXT,
    CHECK ((kind = 'payment') = (reverses IS NULL))
) STRICT;
INSERT INTO ledger_outbox_v4 (seq, entry_id, kind, payment_id, reverses, payload, created_at, forwarded_at,
    tax_voucher_no, attempts, last_error, dead_letter)
SELECT seq, entry_id, kind, payment_id, reverses, payload, created_at, forwarded_at, tax_voucher_no, attempts,
    last_error, dead_letter
FROM ledger_outbox ORDER BY seq;
DROP TABLE ledger_outbox;
ALTER TABLE ledger_outbox_v4 RENAME TO ledger_outbox;
CREATE INDEX ledger_outbox_pending ON ledger_outbox (seq) WHERE forwarded_at IS NULL AND dead_letter IS NULL;
";

/// Why a migration step failed.
pub(crate) struct MigrationFailed {
    /// The version it was to reach.
    pub(crate) version: u32,
    /// SQLite's error.
    pub(crate) error: rusqlite::Error,
}

/// Reads the file's schema version.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0)).map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

/// Applies every migration above `from`, each in its own immediate transaction with its version bump
/// (and the application id). Returns the versions applied.
pub(crate) fn migrate(conn: &Connection, from: u32) -> Result<Vec<u32>, MigrationFailed> {
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > from) {
        let step = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let body = conn.execute_batch(m.sql).and_then(|()| {
                conn.execute_batch(&format!(
                    "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
                    m.version
                ))
            });
            match body.and_then(|()| conn.execute_batch("COMMIT")) {
                Ok(()) => Ok(()),
                Err(e) => {
                    // The error is the one to report; a failed rollback leaves nothing worse behind.
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        };
        step().map_err(|error| MigrationFailed { version: m.version, error })?;
        tracing::info!(version = m.version, name = m.name, "journal schema migrated");
        applied.push(m.version);
    }
    Ok(applied)
}
