//! The journal on SQLite: settings, permissions, migrations, foreign / corrupt / locked files, the
//! all-or-nothing imports, the payment state machine with its bound outbox, group commit, and the stop
//! after an I/O failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod journal_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use journal_support::*;
use rusqlite::Connection;
use zhengjiao::domain::{Fen, Insurance, PersonName};
use zhengjiao::journal::{
    ConflictKind, CreatePaymentError, Effect, EntryKind, ForwardError, ImportError, ImportOutcome, JournalOptions,
    OpenError, PaymentFilter, PaymentState, ReadError, SqliteStore, StorageError, Store, TerminalSaid, TransitionError,
};

fn journal_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("journal.db")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Records `id` for line `n` and moves it `created -> sent -> approved`.
async fn pay(store: &SqliteStore, id: &str, n: u32) -> Effect {
    store.record_payment_created(new_payment(id, &line(n))).await.unwrap();
    store.transition(&reference(id), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    store.transition(&reference(id), PaymentState::Approved, approved(MEDICAL_FEN, 1)).await.unwrap().effect
}

#[tokio::test]
async fn writer_connection_has_wal_full_sync_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    let s = store.settings().await.unwrap();
    assert_eq!(s.journal_mode, "wal");
    assert_eq!(s.synchronous, 2, "synchronous must be FULL (2)");
    assert!(s.foreign_keys);
    assert_eq!(s.busy_timeout_ms, 300);
    assert_eq!(s.schema_version, 4);
    assert_eq!(s.application_id, 0x5A4A_4A4C);

    // WAL is a property of the file: another connection sees it too.
    let raw = Connection::open(journal_path(&dir)).unwrap();
    let mode: String = raw.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn journal_and_companion_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let store = open(&path).await;
    store.import_roster(lines(0..10), false).await.unwrap();
    assert_eq!(store.count_roster_lines().await.unwrap(), 10);
    for (p, name) in
        [(path.clone(), "db"), (dir.path().join("journal.db-wal"), "wal"), (dir.path().join("journal.db-shm"), "shm")]
    {
        assert!(p.exists(), "{name} file missing");
        assert_eq!(mode(&p), 0o600, "{name} file mode");
    }
    store.close().await;

    // A journal (and its companions) found wider is narrowed at open.
    for p in [path.clone(), dir.path().join("journal.db-wal"), dir.path().join("journal.db-shm")] {
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let store = open(&path).await;
    store.count_roster_lines().await.unwrap();
    assert_eq!(mode(&path), 0o600);
    for p in [dir.path().join("journal.db-wal"), dir.path().join("journal.db-shm")] {
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}

/// Schema version 1 exactly as it was released, written by hand (not from the crate's constant).
const HAND_WRITTEN_V1: &str = "
CREATE TABLE roster_lines (
    id INTEGER PRIMARY KEY, serial TEXT NOT NULL,
    insurance TEXT NOT NULL CHECK (insurance IN ('pension', 'medical')), year INTEGER NOT NULL,
    id_number TEXT NOT NULL, name TEXT NOT NULL,
    amount_due_fen INTEGER CHECK (amount_due_fen IS NULL OR amount_due_fen >= 0),
    hardship TEXT NOT NULL CHECK (hardship IN ('none', 'dibao', 'tekun')), collection_point TEXT NOT NULL,
    street TEXT, community TEXT, content_hash TEXT NOT NULL, imported_at TEXT NOT NULL, updated_at TEXT,
    UNIQUE (serial, insurance, year)
) STRICT;
CREATE INDEX roster_lines_by_id_number ON roster_lines (id_number);
CREATE TABLE collectors (
    id INTEGER PRIMARY KEY, collection_point TEXT NOT NULL, staff_no TEXT NOT NULL, no INTEGER,
    collection_point_name TEXT NOT NULL, name TEXT NOT NULL, id_number TEXT NOT NULL, bank_name TEXT NOT NULL,
    bank_branch TEXT NOT NULL, bank_account TEXT NOT NULL, phone TEXT NOT NULL, content_hash TEXT NOT NULL,
    imported_at TEXT NOT NULL, updated_at TEXT, UNIQUE (collection_point, staff_no)
) STRICT;
PRAGMA application_id = 1514818124;
PRAGMA user_version = 1;
";

#[tokio::test]
async fn opening_a_version_1_journal_migrates_it_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    {
        let raw = Connection::open(&path).unwrap();
        raw.execute_batch(HAND_WRITTEN_V1).unwrap();
        let l = line(7);
        raw.execute(
            "INSERT INTO roster_lines (serial, insurance, year, id_number, name, amount_due_fen, hardship,
                 collection_point, street, community, content_hash, imported_at)
             VALUES (?1, 'medical', 2020, ?2, '张三', 28000, 'none', ?3, '光明路街道', NULL, 'old', '2020-09-20T08:00:00.000000+08:00')",
            rusqlite::params![l.serial.as_str(), l.id_number.as_str(), POINT],
        )
        .unwrap();
        let v: i64 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 1);
    }

    let store = open(&path).await;
    assert_eq!(store.settings().await.unwrap().schema_version, 4);
    let stored = store.roster_line(&line(7).serial, Insurance::Medical, 2020).await.unwrap().unwrap();
    assert_eq!(stored.line, line(7));
    assert_eq!(stored.paid_by, None);
    assert_eq!(stored.imported_at, "2020-09-20T08:00:00.000000+08:00");

    // The new tables work on the old line: pay it.
    store.register_terminal(terminal()).await.unwrap();
    assert!(matches!(pay(&store, "P-OLD", 7).await, Effect::Bound { .. }));
    let stored = store.roster_line(&line(7).serial, Insurance::Medical, 2020).await.unwrap().unwrap();
    assert_eq!(stored.paid_by, Some(reference("P-OLD")));

    // A re-import of the same line is unchanged (the content is compared, not the old fingerprint).
    let outcome = store.import_roster(vec![line(7)], false).await.unwrap();
    assert_eq!(outcome, ImportOutcome { inserted: 0, unchanged: 1, updated: 0 });
}

#[tokio::test]
async fn a_journal_from_a_newer_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA application_id = 1514818124; PRAGMA user_version = 99;")
        .unwrap();
    match SqliteStore::open(&path, options()).await {
        Err(e @ OpenError::NewerSchema { found: 99, supported: 4, .. }) => {
            assert!(e.to_string().contains("journal.db"), "{e}");
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    Connection::open(&path).unwrap().execute_batch("CREATE TABLE entries (x INTEGER);").unwrap();
    let err = SqliteStore::open(&path, options()).await.unwrap_err();
    assert!(matches!(err, OpenError::NotAJournal { .. }), "{err:?}");
    assert!(err.to_string().contains("not a zhengjiao journal"), "{err}");
    // Nothing was written into it.
    let tables: i64 =
        Connection::open(&path).unwrap().query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0)).unwrap();
    assert_eq!(tables, 1);
}

#[tokio::test]
async fn random_bytes_are_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let mut bytes = vec![0u8; 16 * 1024];
    let mut x: u32 = 0x1234_5678;
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(&path, options()).await.unwrap_err();
    assert!(matches!(err, OpenError::NotADatabase { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("not a database"), "{msg}");
    // The file is left as it was.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[tokio::test]
async fn a_damaged_journal_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let store = open(&path).await;
    store.import_roster(lines(0..2000), false).await.unwrap();
    store.close().await;
    drop(store);
    // Closing the last connection checkpointed the WAL into the file; overwrite pages past the header
    // and the schema.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 40 * 4096, "journal smaller than expected: {}", bytes.len());
    for b in &mut bytes[8 * 4096..16 * 4096] {
        *b = 0x5A;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(&path, options()).await.unwrap_err();
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[tokio::test]
async fn a_locked_journal_is_reported_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    open(&path).await.close().await;

    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;").unwrap();
    let err = SqliteStore::open(&path, options()).await.unwrap_err();
    assert!(matches!(err, OpenError::Locked { timeout_ms: 300, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("locked by another process") && msg.contains("journal.db"), "{msg}");

    // Once the lock is gone the journal opens.
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    open(&path).await;
}

#[tokio::test]
async fn a_conflicting_row_makes_the_whole_import_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..10), false).await.unwrap();
    let before = store.count_roster_lines().await.unwrap();

    let mut batch = lines(10..15);
    let mut changed = line(3);
    changed.name = PersonName::parse("张三丰").unwrap();
    changed.amount_due = Some(Fen::from_fen(30_000));
    batch.push(changed);
    batch.extend(lines(15..20));
    let err = store.import_roster(batch, false).await.unwrap_err();
    let ImportError::Conflicts(conflicts) = err else { panic!("expected conflicts, got {err:?}") };
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].row, 5);
    assert_eq!(conflicts[0].key, "2020/medical/ZJ-0000003");
    assert_eq!(conflicts[0].kind, ConflictKind::Differs { fields: vec!["name", "amount_due"] });

    assert_eq!(store.count_roster_lines().await.unwrap(), before);
    assert!(store.roster_line(&line(12).serial, Insurance::Medical, 2020).await.unwrap().is_none());
    let kept = store.roster_line(&line(3).serial, Insurance::Medical, 2020).await.unwrap().unwrap();
    assert_eq!(kept.line, line(3));
}

#[tokio::test]
async fn an_identical_reimport_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    let first = store.import_roster(lines(0..50), false).await.unwrap();
    assert_eq!(first, ImportOutcome { inserted: 50, unchanged: 0, updated: 0 });
    let before = store.roster_line(&line(9).serial, Insurance::Medical, 2020).await.unwrap().unwrap();

    let again = store.import_roster(lines(0..50), false).await.unwrap();
    assert_eq!(again, ImportOutcome { inserted: 0, unchanged: 50, updated: 0 });
    let after = store.roster_line(&line(9).serial, Insurance::Medical, 2020).await.unwrap().unwrap();
    assert_eq!(after, before);
    assert!(after.content_hash.starts_with("fnv1a64:"));
    assert_eq!(store.count_roster_lines().await.unwrap(), 50);

    // A blank street is the same as none.
    let mut blank = line(9);
    blank.community = Some("  ".to_owned());
    assert_eq!(store.import_roster(vec![blank], false).await.unwrap().unchanged, 1);
}

#[tokio::test]
async fn one_key_twice_in_an_import_conflicts_unless_identical() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    let outcome = store.import_roster(vec![line(1), line(2), line(1)], false).await.unwrap();
    assert_eq!(outcome, ImportOutcome { inserted: 2, unchanged: 1, updated: 0 });

    let mut other = line(5);
    other.street = None;
    let err = store.import_roster(vec![line(5), line(6), other], false).await.unwrap_err();
    assert_eq!(
        err,
        ImportError::Conflicts(vec![zhengjiao::journal::ImportConflict {
            row: 2,
            key: "2020/medical/ZJ-0000005".to_owned(),
            kind: ConflictKind::DuplicateInImport { first_row: 0, fields: vec!["street"] },
        }])
    );
    assert_eq!(store.count_roster_lines().await.unwrap(), 2);
}

#[tokio::test]
async fn update_applies_to_unpaid_lines_and_is_refused_for_paid_or_under_way_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..3), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    assert!(matches!(pay(&store, "P-1", 1).await, Effect::Bound { .. }));
    store.record_payment_created(new_payment("P-2", &line(2))).await.unwrap();

    let changed = |n: u32| {
        let mut l = line(n);
        l.amount_due = Some(Fen::from_fen(35_000));
        l
    };
    // Without update: a conflict.
    let err = store.import_roster(vec![changed(0)], false).await.unwrap_err();
    assert!(matches!(&err, ImportError::Conflicts(c) if matches!(c[0].kind, ConflictKind::Differs { .. })), "{err:?}");

    // With update: the unpaid line alone would be applied, but the paid one and the one under way
    // conflict, so nothing is.
    let err = store.import_roster(vec![changed(0), changed(1), changed(2)], true).await.unwrap_err();
    let ImportError::Conflicts(c) = err else { panic!() };
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].row, 1);
    assert_eq!(c[0].kind, ConflictKind::Paid { fields: vec!["amount_due"], by: "P-1".to_owned() });
    assert_eq!(c[1].row, 2);
    assert_eq!(c[1].kind, ConflictKind::PaymentUnderWay { fields: vec!["amount_due"], payment: "P-2".to_owned() });
    let unchanged = store.roster_line(&line(0).serial, Insurance::Medical, 2020).await.unwrap().unwrap();
    assert_eq!(unchanged.line.amount_due, Some(Fen::from_fen(MEDICAL_FEN)));

    // The unpaid line alone: updated.
    let outcome = store.import_roster(vec![changed(0), line(1)], true).await.unwrap();
    assert_eq!(outcome, ImportOutcome { inserted: 0, unchanged: 1, updated: 1 });
    let updated = store.roster_line(&line(0).serial, Insurance::Medical, 2020).await.unwrap().unwrap();
    assert_eq!(updated.line.amount_due, Some(Fen::from_fen(35_000)));
    assert!(updated.updated_at.is_some());
    assert_ne!(updated.content_hash, unchanged.content_hash);
}

#[tokio::test]
async fn collectors_import_with_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    let first = store.import_collectors(vec![collector(1), collector(2)], false).await.unwrap();
    assert_eq!(first.inserted, 2);
    // The row number on the form is not content.
    let mut renumbered = collector(1);
    renumbered.no = Some(9);
    assert_eq!(store.import_collectors(vec![renumbered], false).await.unwrap().unchanged, 1);

    let mut moved = collector(2);
    moved.phone = "13900000000".to_owned();
    let err = store.import_collectors(vec![collector(3), moved.clone()], false).await.unwrap_err();
    let ImportError::Conflicts(c) = err else { panic!() };
    assert_eq!((c[0].row, c[0].key.as_str()), (1, "WD-001/0002"));
    assert_eq!(c[0].kind, ConflictKind::Differs { fields: vec!["phone"] });
    assert_eq!(store.collectors().await.unwrap().len(), 2, "collector 3 must not have been imported");

    let outcome = store.import_collectors(vec![collector(3), moved.clone()], true).await.unwrap();
    assert_eq!(outcome, ImportOutcome { inserted: 1, unchanged: 0, updated: 1 });
    let all = store.collectors().await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1], moved);
}

#[tokio::test]
async fn lines_are_found_by_id_number() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    let mut pension = line(4);
    pension.insurance = Insurance::Pension;
    pension.amount_due = None;
    store.import_roster(vec![line(3), line(4), pension.clone()], false).await.unwrap();
    let found = store.lines_by_id_number(&id_number(4)).await.unwrap();
    assert_eq!(found.iter().map(|s| s.line.clone()).collect::<Vec<_>>(), vec![line(4), pension]);
    assert!(store.lines_by_id_number(&id_number(99)).await.unwrap().is_empty());
}

#[tokio::test]
async fn approval_binds_the_line_and_writes_the_ledger_entry_then_void_reverses_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..2), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    let created = store.record_payment_created(new_payment("P-100", &line(0))).await.unwrap();
    assert_eq!(created.state, PaymentState::Created);
    assert!(store.pending_outbox(10).await.unwrap().is_empty());

    // A second payment for the line while the first is under way is refused.
    let err = store.record_payment_created(new_payment("P-101", &line(0))).await.unwrap_err();
    assert!(
        matches!(err, CreatePaymentError::PaymentUnderWay { ref other, state: PaymentState::Created, .. } if other == "P-100"),
        "{err:?}"
    );
    // So is a reused reference.
    let err = store.record_payment_created(new_payment("P-100", &line(1))).await.unwrap_err();
    assert!(matches!(err, CreatePaymentError::DuplicateId { .. }), "{err:?}");

    store.transition(&reference("P-100"), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    let out = store.transition(&reference("P-100"), PaymentState::Approved, approved(MEDICAL_FEN, 42)).await.unwrap();
    assert_eq!(out.from, PaymentState::Sent);
    assert_eq!(out.effect, Effect::Bound { entry_id: "P-100".to_owned() });
    assert_eq!(out.payment.state, PaymentState::Approved);
    assert_eq!(out.payment.pos.trace.unwrap().as_str(), "000042");
    let stored = store.roster_line(&line(0).serial, Insurance::Medical, 2020).await.unwrap().unwrap();
    assert_eq!(stored.paid_by, Some(reference("P-100")));

    let outbox = store.pending_outbox(10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    let entry = &outbox[0];
    assert_eq!(
        (entry.entry_id.as_str(), entry.kind, entry.payment_id.as_str()),
        ("P-100", EntryKind::Payment, "P-100")
    );
    let p = &entry.payload;
    assert_eq!(p["amount"], "280.00");
    assert_eq!(p["payer_id"], id_number(0).as_str());
    assert_eq!(p["collection_serial"], "ZJ-0000000");
    assert_eq!(p["insurance"], "medical");
    assert_eq!(p["channel"], "pos");
    assert_eq!(p["trace"], "000042");
    assert_eq!(p["card_masked"], "622202******1234");
    assert_eq!(p["reverses"], serde_json::Value::Null);
    assert!(p["occurred_at"].as_str().unwrap().ends_with("+08:00"));

    // The line is paid: no new payment.
    let err = store.record_payment_created(new_payment("P-102", &line(0))).await.unwrap_err();
    assert!(matches!(err, CreatePaymentError::LinePaid { ref by, .. } if by == "P-100"), "{err:?}");

    // The ledger confirms: forwarded, once.
    store.mark_forwarded("P-100", "TV-0001").await.unwrap();
    store.mark_forwarded("P-100", "TV-0001").await.unwrap();
    assert!(store.pending_outbox(10).await.unwrap().is_empty());
    assert_eq!(store.payment(&reference("P-100")).await.unwrap().unwrap().state, PaymentState::Forwarded);

    // Void: the line is unpaid again and a reversal waits for the ledger.
    let out = store.transition(&reference("P-100"), PaymentState::Voided, approved(MEDICAL_FEN, 43)).await.unwrap();
    assert_eq!(out.effect, Effect::Reversed { entry_id: Some("P-100-reversal".to_owned()) });
    assert_eq!(out.payment.pos.trace.unwrap().as_str(), "000042", "the payment keeps the sale's POS data");
    let stored = store.roster_line(&line(0).serial, Insurance::Medical, 2020).await.unwrap().unwrap();
    assert_eq!(stored.paid_by, None);
    let outbox = store.pending_outbox(10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].kind, EntryKind::Reversal);
    assert_eq!(outbox[0].reverses.as_deref(), Some("P-100"));
    assert_eq!(outbox[0].payload["trace"], "000043");
    assert_eq!(outbox[0].payload["amount"], "280.00");

    let history = store.payment_history(&reference("P-100")).await.unwrap();
    let steps: Vec<_> = history.iter().map(|h| (h.from, h.to)).collect();
    use PaymentState::*;
    assert_eq!(
        steps,
        vec![
            (None, Created),
            (Some(Created), Sent),
            (Some(Sent), Approved),
            (Some(Approved), Forwarded),
            (Some(Forwarded), Voided)
        ]
    );
    assert_eq!(history[2].said.code.unwrap().as_str(), "00");
    assert!(history[3].said.note.as_deref().unwrap().contains("TV-0001"));
    assert!(history.iter().all(|h| h.at.ends_with("+08:00")));
}

#[tokio::test]
async fn failed_sends_are_counted_and_a_rejection_dead_letters_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..2), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    assert!(matches!(pay(&store, "P-1", 0).await, Effect::Bound { .. }));
    assert!(matches!(pay(&store, "P-2", 1).await, Effect::Bound { .. }));

    store.mark_forward_failed("P-1", "timeout after 10 s", false).await.unwrap();
    let pending = store.pending_outbox(10).await.unwrap();
    assert_eq!(pending.iter().map(|e| e.entry_id.as_str()).collect::<Vec<_>>(), ["P-1", "P-2"]);
    assert_eq!((pending[0].attempts, pending[0].last_error.as_deref()), (1, Some("timeout after 10 s")));
    assert_eq!(store.pending_outbox(1).await.unwrap().len(), 1);

    store.mark_forward_failed("P-2", "rejected: invalid_field:payer_id", true).await.unwrap();
    let pending = store.pending_outbox(10).await.unwrap();
    assert_eq!(pending.len(), 1, "a dead-lettered entry is never retried");
    let err = store.mark_forwarded("P-2", "TV-9").await.unwrap_err();
    assert!(matches!(err, ForwardError::DeadLettered { .. }), "{err:?}");
    assert_eq!(store.payment(&reference("P-2")).await.unwrap().unwrap().state, PaymentState::Approved);

    store.mark_forwarded("P-1", "TV-1").await.unwrap();
    let err = store.mark_forwarded("P-1", "TV-2").await.unwrap_err();
    assert!(matches!(err, ForwardError::VoucherDiffers { ref existing, .. } if existing == "TV-1"), "{err:?}");
    let err = store.mark_forward_failed("nope", "x", false).await.unwrap_err();
    assert!(matches!(err, ForwardError::UnknownEntry { .. }), "{err:?}");
}

#[tokio::test]
async fn the_state_machine_refuses_moves_it_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..3), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    store.record_payment_created(new_payment("P-1", &line(0))).await.unwrap();
    let id = reference("P-1");

    let err = store.transition(&id, PaymentState::Approved, approved(MEDICAL_FEN, 1)).await.unwrap_err();
    assert_eq!(
        err,
        TransitionError::NotAllowed { id: "P-1".to_owned(), from: PaymentState::Created, to: PaymentState::Approved }
    );
    let err = store.transition(&id, PaymentState::Forwarded, TerminalSaid::default()).await.unwrap_err();
    assert!(matches!(err, TransitionError::ForwardedByLedger { .. }), "{err:?}");
    let err = store.transition(&reference("P-404"), PaymentState::Sent, TerminalSaid::default()).await.unwrap_err();
    assert!(matches!(err, TransitionError::UnknownPayment { .. }), "{err:?}");

    // Crash before send -> unknown -> QUERY says 25 -> not charged: the line is free again.
    store.transition(&id, PaymentState::Unknown, TerminalSaid::note("found created at start-up")).await.unwrap();
    assert_eq!(store.payments_in(&[PaymentState::Unknown]).await.unwrap().len(), 1);
    store.transition(&id, PaymentState::NotCharged, TerminalSaid::default()).await.unwrap();
    let err = store.transition(&id, PaymentState::Approved, approved(MEDICAL_FEN, 1)).await.unwrap_err();
    assert!(matches!(err, TransitionError::NotAllowed { from: PaymentState::NotCharged, .. }), "{err:?}");
    store.record_payment_created(new_payment("P-2", &line(0))).await.unwrap();

    // Refusals left only the steps taken.
    assert_eq!(store.payment_history(&id).await.unwrap().len(), 3);
}

#[tokio::test]
async fn an_approval_that_cannot_bind_writes_nothing_for_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let store = open(&path).await;
    store.import_roster(lines(0..2), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();

    // Approved for another amount: not bound, to be voided.
    store.record_payment_created(new_payment("P-1", &line(0))).await.unwrap();
    store.transition(&reference("P-1"), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    let out = store.transition(&reference("P-1"), PaymentState::Approved, approved(1, 1)).await.unwrap();
    assert_eq!(out.effect, Effect::AmountDiffers { requested: Fen::from_fen(MEDICAL_FEN), approved: Fen::from_fen(1) });
    assert!(store.pending_outbox(10).await.unwrap().is_empty());
    assert_eq!(store.roster_line(&line(0).serial, Insurance::Medical, 2020).await.unwrap().unwrap().paid_by, None);

    // The line paid by another path meanwhile: not bound either.
    store.record_payment_created(new_payment("P-2", &line(0))).await.unwrap();
    store.transition(&reference("P-2"), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE roster_lines SET paid_by = 'P-1' WHERE serial = 'ZJ-0000000'", [])
        .unwrap();
    let out = store.transition(&reference("P-2"), PaymentState::Approved, approved(MEDICAL_FEN, 2)).await.unwrap();
    assert_eq!(out.effect, Effect::LineAlreadyPaid { by: "P-1".to_owned() });
    assert!(store.pending_outbox(10).await.unwrap().is_empty());

    // Voiding an unbound payment reverses nothing at the ledger.
    let out = store.transition(&reference("P-2"), PaymentState::Voided, TerminalSaid::default()).await.unwrap();
    assert_eq!(out.effect, Effect::Reversed { entry_id: None });
}

#[tokio::test]
async fn one_person_is_charged_once_per_insurance_and_year() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    // Person 0 on line 0 and, again, on line 1 (same insurance, same year); also for pension and for
    // 2021, which are other payments.
    let twin = same_person(0, 1);
    let mut pension = same_person(0, 2);
    pension.insurance = Insurance::Pension;
    pension.amount_due = None;
    let mut next_year = same_person(0, 3);
    next_year.year = 2021;
    store.import_roster(vec![line(0), twin.clone(), pension.clone(), next_year.clone()], false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    let full = id_number(0).as_str().to_owned();

    // A payment under way on one line: none on the person's other line.
    store.record_payment_created(new_payment("P-1", &line(0))).await.unwrap();
    let err = store.record_payment_created(new_payment("P-2", &twin)).await.unwrap_err();
    assert_eq!(
        err,
        CreatePaymentError::PersonPaymentUnderWay {
            key: "2020/medical/ZJ-0000001".to_owned(),
            other_line: "2020/medical/ZJ-0000000".to_owned(),
            other: "P-1".to_owned(),
            state: PaymentState::Created,
        }
    );
    let msg = err.to_string();
    for part in ["ZJ-0000001", "ZJ-0000000", "P-1", "created"] {
        assert!(msg.contains(part), "{part} missing: {msg}");
    }
    // Still under way after a lost link.
    store.transition(&reference("P-1"), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    store.transition(&reference("P-1"), PaymentState::Unknown, TerminalSaid::note("link lost")).await.unwrap();
    let err = store.record_payment_created(new_payment("P-2", &twin)).await.unwrap_err();
    assert!(matches!(err, CreatePaymentError::PersonPaymentUnderWay { state: PaymentState::Unknown, .. }), "{err:?}");

    // Another insurance or another year of the same person is another payment.
    store.record_payment_created(new_payment("P-3", &pension)).await.unwrap();
    store.record_payment_created(new_payment("P-4", &next_year)).await.unwrap();

    // Paid on one line: refused on the other, and the error never carries the full ID number.
    let out = store.transition(&reference("P-1"), PaymentState::Approved, approved(MEDICAL_FEN, 1)).await.unwrap();
    assert_eq!(out.effect, Effect::Bound { entry_id: "P-1".to_owned() });
    let err = store.record_payment_created(new_payment("P-5", &twin)).await.unwrap_err();
    let masked = format!("{}********{}", &full[..6], &full[14..]);
    assert_eq!(
        err,
        CreatePaymentError::PersonPaid {
            key: "2020/medical/ZJ-0000001".to_owned(),
            id_masked: masked.clone(),
            other_line: "2020/medical/ZJ-0000000".to_owned(),
            by: "P-1".to_owned(),
        }
    );
    let msg = err.to_string();
    for part in ["ZJ-0000001", "ZJ-0000000", "P-1", masked.as_str()] {
        assert!(msg.contains(part), "{part} missing: {msg}");
    }
    assert!(!msg.contains(&full) && !format!("{err:?}").contains(&full), "full ID number in {err:?}");

    // Nothing refused was written.
    let twin_key =
        zhengjiao::journal::LineKey { serial: twin.serial.clone(), insurance: Insurance::Medical, year: 2020 };
    let on_twin = PaymentFilter { line: Some(twin_key), ..PaymentFilter::all(10) };
    assert!(store.payments(on_twin).await.unwrap().is_empty());

    // Voided, the person owes it again: the other line may be paid now.
    store.transition(&reference("P-1"), PaymentState::Voided, approved(MEDICAL_FEN, 2)).await.unwrap();
    store.record_payment_created(new_payment("P-6", &twin)).await.unwrap();
}

#[tokio::test]
async fn an_approval_does_not_bind_when_the_person_is_paid_on_another_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let store = open(&path).await;
    store.import_roster(lines(0..2), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    for (id, n) in [("P-1", 0), ("P-2", 1)] {
        store.record_payment_created(new_payment(id, &line(n))).await.unwrap();
        store.transition(&reference(id), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    }
    // Both under way for one person (a journal written before the rule, or a line corrected by hand).
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE roster_lines SET id_number = ?1 WHERE serial = 'ZJ-0000001'", [id_number(0).as_str()])
        .unwrap();

    let out = store.transition(&reference("P-1"), PaymentState::Approved, approved(MEDICAL_FEN, 1)).await.unwrap();
    assert_eq!(out.effect, Effect::Bound { entry_id: "P-1".to_owned() });
    let out = store.transition(&reference("P-2"), PaymentState::Approved, approved(MEDICAL_FEN, 2)).await.unwrap();
    assert_eq!(out.effect, Effect::LineAlreadyPaid { by: "P-1".to_owned() });
    assert_eq!(out.payment.state, PaymentState::Approved, "the approval is recorded");

    // Not bound, nothing for the ledger.
    assert_eq!(store.roster_line(&line(1).serial, Insurance::Medical, 2020).await.unwrap().unwrap().paid_by, None);
    let outbox = store.pending_outbox(10).await.unwrap();
    assert_eq!(outbox.iter().map(|e| e.entry_id.as_str()).collect::<Vec<_>>(), ["P-1"]);
    assert!(store.is_bound(&reference("P-1")).await.unwrap());
    assert!(!store.is_bound(&reference("P-2")).await.unwrap());
    assert!(!store.is_bound(&reference("P-404")).await.unwrap());
}

#[tokio::test]
async fn an_approval_without_a_positive_amount_does_not_bind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..3), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    // `TerminalSaid::from_response` leaves a zero amount out: `00` with amount 0 arrives as `None`.
    for (n, amount) in [(0u32, None), (1, Some(Fen::ZERO)), (2, Some(Fen::from_fen(-100)))] {
        let id = format!("P-{n}");
        store.record_payment_created(new_payment(&id, &line(n))).await.unwrap();
        store.transition(&reference(&id), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
        let said = TerminalSaid { amount, ..approved(MEDICAL_FEN, u64::from(n) + 1) };
        let out = store.transition(&reference(&id), PaymentState::Approved, said).await.unwrap();
        assert_eq!(
            out.effect,
            Effect::AmountDiffers { requested: Fen::from_fen(MEDICAL_FEN), approved: Fen::ZERO },
            "amount {amount:?}"
        );
        assert_eq!(out.payment.state, PaymentState::Approved);
        let stored = store.roster_line(&line(n).serial, Insurance::Medical, 2020).await.unwrap().unwrap();
        assert_eq!(stored.paid_by, None, "amount {amount:?}");
        assert!(!store.is_bound(&reference(&id)).await.unwrap());
    }
    assert!(store.pending_outbox(10).await.unwrap().is_empty(), "nothing goes to the ledger");
}

#[tokio::test]
async fn the_history_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let store = open(&path).await;
    store.import_roster(lines(0..1), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    store.record_payment_created(new_payment("P-1", &line(0))).await.unwrap();
    let raw = Connection::open(&path).unwrap();
    let err = raw.execute("UPDATE payment_transitions SET to_state = 'approved'", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = raw.execute("DELETE FROM payment_transitions", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_committed_in_fewer_batches_and_all_readable() {
    const WRITES: u32 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..WRITES), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    let before = store.metrics();

    let start = Arc::new(tokio::sync::Barrier::new(WRITES as usize));
    let tasks: Vec<_> = (0..WRITES)
        .map(|n| {
            let (store, start) = (store.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                store.record_payment_created(new_payment(&format!("P-{n}"), &line(n))).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().state, PaymentState::Created);
    }

    let after = store.metrics();
    let batches = after.batches_committed - before.batches_committed;
    let writes = after.writes_committed - before.writes_committed;
    assert_eq!(writes, u64::from(WRITES));
    assert!(batches < writes, "{batches} batches for {writes} writes: no group commit");
    assert!(after.largest_batch > 1);
    assert_eq!(after.batch_sizes.iter().sum::<u64>(), after.batches_committed);
    assert!(after.commit_time > std::time::Duration::ZERO);
    eprintln!("{writes} writes in {batches} batches (mean {:.1})", writes as f64 / batches as f64);

    for n in (0..WRITES).step_by(97) {
        let p = store.payment(&reference(&format!("P-{n}"))).await.unwrap().unwrap();
        assert_eq!(p.line.serial, line(n).serial);
    }
    assert_eq!(store.payments_in(&[PaymentState::Created]).await.unwrap().len(), WRITES as usize);
}

#[tokio::test]
async fn a_refused_write_does_not_disturb_the_others_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..100), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    // Batches without a refusal run once, with no savepoints.
    assert_eq!(store.metrics().batches_rerun, 0);
    // Good and refused (duplicate reference) writes submitted together.
    let tasks: Vec<_> = (0..100u32)
        .map(|n| {
            let store = store.clone();
            let id = if n % 2 == 0 { format!("P-{n}") } else { format!("P-{}", n - 1) };
            tokio::spawn(async move { store.record_payment_created(new_payment(&id, &line(n))).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(CreatePaymentError::DuplicateId { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 50);
    assert_eq!(store.payments_in(&[PaymentState::Created]).await.unwrap().len(), 50);
    // A batch with a refusal was rolled back and run again with a savepoint per write: the writes
    // kept were applied once, not once per run.
    assert!(store.metrics().batches_rerun >= 1, "{:?}", store.metrics());
    for n in (0..100u32).step_by(2) {
        let history = store.payment_history(&reference(&format!("P-{n}"))).await.unwrap();
        assert_eq!(history.len(), 1, "P-{n}: {history:?}");
    }
}

#[tokio::test]
async fn a_step_read_with_its_detail_in_a_batch_run_again_answers_with_the_second_run() {
    use PaymentState::*;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..100), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    store.record_payment_created(new_payment("P-0", &line(0))).await.unwrap();
    let reruns = store.metrics().batches_rerun;
    // The approval queued among refused writes (references already taken), so that it shares a batch
    // with them: the batch runs again, and so does the approval with its read.
    let refused: Vec<_> = (1..40u32)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.record_payment_created(new_payment("P-0", &line(n))).await })
        })
        .collect();
    let sent = vec![(Sent, TerminalSaid::default())];
    let pending = store.queue_transition_detailed(&reference("P-0"), sent, Approved, approved(MEDICAL_FEN, 1)).await;
    for t in refused {
        let err = t.await.unwrap().unwrap_err();
        assert!(matches!(err, CreatePaymentError::DuplicateId { .. }), "{err}");
    }
    let (out, detail) = pending.outcome().await.unwrap();
    assert!(store.metrics().batches_rerun > reruns);
    assert_eq!(out.effect, Effect::Bound { entry_id: "P-0".to_owned() });
    // One approval in the journal, and the detail is what a read finds.
    let read = store.payment_detail(&reference("P-0")).await.unwrap().unwrap();
    assert_eq!(detail.as_ref(), Some(&read));
    assert_eq!(read.history.len(), 3, "{:?}", read.history);
    assert_eq!(store.pending_outbox(10).await.unwrap().len(), 1);
}

#[test]
fn sqlite_is_built_without_its_shared_page_cache_and_allocation_statistics() {
    // `.cargo/config.toml` passes these to the bundled build: with them, connections in one process
    // do not wait on each other's page cache or allocations.
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let options: Vec<String> = conn
        .prepare("PRAGMA compile_options")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
    assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
}

#[tokio::test]
async fn after_an_io_failure_the_store_refuses_work_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let small = JournalOptions { max_pages: Some(64), ..options() };
    let store = SqliteStore::open(&path, small).await.unwrap();
    store.import_roster(lines(0..10), false).await.unwrap();

    // This batch needs more pages than the cap: SQLite reports a full disk.
    let err = store.import_roster(lines(10..5000), false).await.unwrap_err();
    match &err {
        ImportError::Storage(StorageError::Failed { what, .. }) => assert!(what.contains("full"), "{what}"),
        other => panic!("expected a storage failure, got {other:?}"),
    }
    assert!(err.to_string().contains("refuses all work until it is reopened"), "{err}");

    // Everything is refused now, reads included.
    let read = store.count_roster_lines().await.unwrap_err();
    assert!(matches!(read, ReadError::Storage(StorageError::Stopped { .. })), "{read:?}");
    let write = store.import_roster(lines(10..11), false).await.unwrap_err();
    assert!(matches!(write, ImportError::Storage(StorageError::Stopped { .. })), "{write:?}");
    assert!(store.metrics().batches_failed >= 1);
    drop(store);

    // Reopened (without the cap): the failed batch left nothing, the earlier one is there.
    let store = open(&path).await;
    assert_eq!(store.count_roster_lines().await.unwrap(), 10);
    store.import_roster(lines(10..5000), false).await.unwrap();
    assert_eq!(store.count_roster_lines().await.unwrap(), 5000);
}

#[tokio::test]
async fn a_closed_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    let other = store.clone();
    store.close().await;
    let err = other.import_roster(lines(0..1), false).await.unwrap_err();
    assert!(matches!(err, ImportError::Storage(StorageError::Closed { .. })), "{err:?}");
    let err = other.count_roster_lines().await.unwrap_err();
    assert!(matches!(err, ReadError::Storage(StorageError::Closed { .. })), "{err:?}");
}

#[tokio::test]
async fn steps_recorded_in_one_write_read_as_steps_recorded_one_by_one() {
    use PaymentState::*;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..3), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();

    // One by one, and through `sent` in one write: the same rows, the same effects.
    pay(&store, "P-1", 0).await;
    store.record_payment_created(new_payment("P-2", &line(1))).await.unwrap();
    let sent = TerminalSaid::note("answered before its ACK");
    let out = store
        .transition_through(&reference("P-2"), vec![(Sent, sent)], Approved, approved(MEDICAL_FEN, 2))
        .await
        .unwrap();
    assert_eq!(out.from, Created);
    assert_eq!(out.effect, Effect::Bound { entry_id: "P-2".to_owned() });
    // The payment the write answers with is the row as a read finds it.
    let read = store.payment(&reference("P-2")).await.unwrap().unwrap();
    assert_eq!(out.payment, read);
    assert_eq!(read.state, Approved);
    assert_eq!(read.pos.trace.as_ref().map(|t| t.as_str()), Some("000002"));

    let one_by_one = store.payment_history(&reference("P-1")).await.unwrap();
    let through = store.payment_history(&reference("P-2")).await.unwrap();
    let steps = |h: &[zhengjiao::journal::TransitionRecord]| h.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>();
    assert_eq!(steps(&through), steps(&one_by_one));
    assert_eq!(steps(&through), vec![(None, Created), (Some(Created), Sent), (Some(Sent), Approved)]);
    assert_eq!(through[1].said.note.as_deref(), Some("answered before its ACK"));
    assert_eq!(through[2].said.code.map(|c| c.as_str().to_owned()).as_deref(), Some("00"));
    assert!(through.windows(2).all(|w| w[0].seq < w[1].seq), "in order: {through:?}");

    // The detail read gives the same payment, line, reversals and history as the separate reads.
    let detail = store.payment_detail(&reference("P-2")).await.unwrap().unwrap();
    assert_eq!(detail.payment, read);
    assert_eq!(detail.history, through);
    assert!(detail.reversals.is_empty());
    assert_eq!(detail.line.and_then(|l| l.paid_by), Some(reference("P-2")));
    assert!(store.payment_detail(&reference("P-404")).await.unwrap().is_none());

    // A step with effects cannot be passed through, and a refused write leaves nothing behind.
    store.record_payment_created(new_payment("P-3", &line(2))).await.unwrap();
    let err = store
        .transition_through(
            &reference("P-3"),
            vec![(Sent, TerminalSaid::default()), (Approved, approved(MEDICAL_FEN, 3))],
            Voided,
            TerminalSaid::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err, TransitionError::NotAllowed { id: "P-3".to_owned(), from: Sent, to: Approved });
    let err = store
        .transition_through(&reference("P-3"), vec![(Unknown, TerminalSaid::default())], Sent, TerminalSaid::default())
        .await
        .unwrap_err();
    assert_eq!(err, TransitionError::NotAllowed { id: "P-3".to_owned(), from: Unknown, to: Sent });
    assert_eq!(store.payment_history(&reference("P-3")).await.unwrap().len(), 1);
    assert_eq!(store.payment(&reference("P-3")).await.unwrap().unwrap().state, Created);
    assert_eq!(store.pending_outbox(10).await.unwrap().len(), 2, "P-1 and P-2 only");
}

#[tokio::test]
async fn a_step_queued_with_its_detail_answers_with_what_a_read_finds_after_the_commit() {
    use PaymentState::*;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..3), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();

    // The approval, with `sent` in the same write: the detail is the payment as it was committed.
    store.record_payment_created(new_payment("P-1", &line(0))).await.unwrap();
    let sent = vec![(Sent, TerminalSaid::note("answered before its ACK"))];
    let pending = store.queue_transition_detailed(&reference("P-1"), sent, Approved, approved(MEDICAL_FEN, 1)).await;
    let (out, detail) = pending.outcome().await.unwrap();
    let detail = detail.expect("the writer read the detail");
    assert_eq!(out.effect, Effect::Bound { entry_id: "P-1".to_owned() });
    let read = store.payment_detail(&reference("P-1")).await.unwrap().unwrap();
    assert_eq!(detail, read);
    assert_eq!(detail.payment.state, Approved);
    assert_eq!(detail.line.as_ref().and_then(|l| l.paid_by), Some(reference("P-1")));
    let steps: Vec<_> = detail.history.iter().map(|r| (r.from, r.to)).collect();
    assert_eq!(steps, vec![(None, Created), (Some(Created), Sent), (Some(Sent), Approved)]);

    // A decline: the line stays unpaid in the detail too.
    store.record_payment_created(new_payment("P-2", &line(1))).await.unwrap();
    let sent = vec![(Sent, TerminalSaid::default())];
    let pending = store.queue_transition_detailed(&reference("P-2"), sent, Declined, TerminalSaid::default()).await;
    let (_, detail) = pending.outcome().await.unwrap();
    let detail = detail.expect("the writer read the detail");
    assert_eq!(detail, store.payment_detail(&reference("P-2")).await.unwrap().unwrap());
    assert_eq!(detail.line.as_ref().and_then(|l| l.paid_by), None);

    // A refused step has no detail: it is refused, with nothing written.
    let pending = store.queue_transition_detailed(&reference("P-404"), vec![], Approved, TerminalSaid::default()).await;
    let err = pending.outcome().await.unwrap_err();
    assert!(matches!(err, TransitionError::UnknownPayment { .. }), "{err:?}");
}

#[tokio::test]
async fn committed_pages_reach_the_journal_file_without_the_writer_checkpointing() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let store = open(&path).await;
    let before = std::fs::metadata(&path).unwrap().len();
    // A few hundred pages: far below the writer's own automatic checkpoint (16,384 pages), so only the
    // checkpoint thread copies them from the WAL into the journal file.
    store.import_roster(lines(0..3000), false).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = std::fs::metadata(&path).unwrap().len();
        if now > before + 100 * 1024 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the journal file stayed at {now} bytes (from {before})");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // And nothing is lost on the way: the lines read back.
    assert_eq!(store.count_roster_lines().await.unwrap(), 3000);
    // Closing stops the checkpoint thread first, and the last connection to close folds the WAL into
    // the journal file and removes it: no connection of the thread is left holding it.
    store.close().await;
    let wal = path.with_file_name(format!("{}-wal", path.file_name().unwrap().to_string_lossy()));
    assert!(!wal.exists(), "{} is still there after close", wal.display());
    let reopened = open(&path).await;
    assert_eq!(reopened.count_roster_lines().await.unwrap(), 3000);
}
