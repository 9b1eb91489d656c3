//! The journal's schema version 3: terminal names, reversals (void / refund) through the payment state
//! machine, payment listings, batch totals and settlements, and the migration of a version 2 file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod journal_support;

use journal_support::*;
use rusqlite::Connection;
use time::macros::{date, datetime};
use zhengjiao::clock::Clock;
use zhengjiao::domain::{CollectionPointCode, Fen, StaffNumber};
use zhengjiao::journal::{
    BatchTotals, CreateReversalError, Effect, EntryKind, JournalOptions, LineKey, NewReversal, PaymentFilter,
    PaymentState, ReversalKind, SettlementError, SqliteStore, Store, Terminal, TerminalSaid, TransitionError,
};
use zhengjiao_protocol::message::{Batch, Rrn, TerminalId, Trace};
use zhengjiao_protocol::ResponseCode;

fn journal_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("journal.db")
}

fn tid(id: &str) -> TerminalId {
    TerminalId::new(id).unwrap()
}

fn batch(b: &str) -> Batch {
    Batch::new(b).unwrap()
}

/// Records `id` for line `n` and moves it `created -> sent -> approved` (trace `trace`, batch 000001).
async fn pay(store: &SqliteStore, id: &str, n: u32, trace: u64) {
    store.record_payment_created(new_payment(id, &line(n))).await.unwrap();
    store.transition(&reference(id), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    let out = store.transition(&reference(id), PaymentState::Approved, approved(MEDICAL_FEN, trace)).await.unwrap();
    assert!(matches!(out.effect, Effect::Bound { .. }), "{:?}", out.effect);
}

fn new_reversal(id: &str, payment: &str, kind: ReversalKind, amount: i64) -> NewReversal {
    NewReversal {
        id: reference(id),
        payment: reference(payment),
        kind,
        amount: Fen::from_fen(amount),
        terminal: tid(TERMINAL),
        operator: StaffNumber::parse("0001").unwrap(),
    }
}

/// What the terminal says approving a reversal: its own trace, batch and rrn.
fn reversal_said(amount: i64, trace: u64, batch_no: &str) -> TerminalSaid {
    TerminalSaid {
        trace: Some(Trace::from_number(trace).unwrap()),
        batch: Some(batch(batch_no)),
        rrn: Some(Rrn::new("201021180000").unwrap()),
        ..approved(amount, trace)
    }
}

fn declined() -> TerminalSaid {
    TerminalSaid {
        code: Some(ResponseCode::new("05").unwrap()),
        text: Some("不予承兑".to_owned()),
        batch: Some(batch("000001")),
        ..TerminalSaid::default()
    }
}

/// Records reversal `id` and moves it `created -> sent -> approved`.
async fn reverse(store: &SqliteStore, r: NewReversal, said: TerminalSaid) -> zhengjiao::journal::ReversalOutcome {
    let id = r.id;
    store.record_reversal_created(r).await.unwrap();
    store.transition_reversal(&id, PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    store.transition_reversal(&id, PaymentState::Approved, said).await.unwrap()
}

#[tokio::test]
async fn a_terminal_keeps_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.register_terminal(terminal()).await.unwrap();
    let second = Terminal { id: tid("T0000002"), name: "T02".to_owned(), merchant_id: None, ..terminal() };
    store.register_terminal(second.clone()).await.unwrap();
    assert_eq!(store.terminals().await.unwrap(), vec![terminal(), second.clone()]);

    // Registering again with another name renames it.
    let renamed = Terminal { name: "柜台2".to_owned(), ..second };
    store.register_terminal(renamed.clone()).await.unwrap();
    assert_eq!(store.terminals().await.unwrap(), vec![terminal(), renamed]);
}

#[tokio::test]
async fn a_reversal_is_refused_with_a_reason_for_each_case() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..4), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    pay(&store, "P-1", 0, 1).await;
    store.record_payment_created(new_payment("P-2", &line(1))).await.unwrap();
    store.record_payment_created(new_payment("P-3", &line(2))).await.unwrap();
    store.transition(&reference("P-3"), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    store.transition(&reference("P-3"), PaymentState::Declined, declined()).await.unwrap();
    let void = |id: &str, payment: &str, amount| new_reversal(id, payment, ReversalKind::Void, amount);

    let err = store.record_reversal_created(void("", "P-1", MEDICAL_FEN)).await.unwrap_err();
    assert_eq!(err, CreateReversalError::EmptyId);

    let err = store.record_reversal_created(void("R-1", "P-404", MEDICAL_FEN)).await.unwrap_err();
    assert_eq!(err, CreateReversalError::UnknownPayment { id: "R-1".to_owned(), payment: "P-404".to_owned() });
    assert!(err.to_string().contains("P-404"), "{err}");

    let err = store.record_reversal_created(void("R-1", "P-2", MEDICAL_FEN)).await.unwrap_err();
    assert!(matches!(err, CreateReversalError::PaymentUnderWay { state: PaymentState::Created, .. }), "{err:?}");
    assert!(err.to_string().contains("P-2") && err.to_string().contains("created"), "{err}");

    let err = store.record_reversal_created(void("R-1", "P-3", MEDICAL_FEN)).await.unwrap_err();
    assert!(matches!(err, CreateReversalError::PaymentNotReversible { state: PaymentState::Declined, .. }), "{err:?}");

    let err = store.record_reversal_created(void("R-1", "P-1", 0)).await.unwrap_err();
    assert_eq!(err, CreateReversalError::BadAmount { id: "R-1".to_owned(), amount_fen: 0 });
    let err = store.record_reversal_created(void("R-1", "P-1", -5)).await.unwrap_err();
    assert!(matches!(err, CreateReversalError::BadAmount { amount_fen: -5, .. }), "{err:?}");

    let err = store.record_reversal_created(void("R-1", "P-1", MEDICAL_FEN + 1)).await.unwrap_err();
    assert_eq!(
        err,
        CreateReversalError::AmountAboveApproved {
            id: "R-1".to_owned(),
            payment: "P-1".to_owned(),
            amount_fen: MEDICAL_FEN + 1,
            approved_fen: MEDICAL_FEN,
        }
    );
    assert!(err.to_string().contains("28001") && err.to_string().contains("28000"), "{err}");

    let elsewhere = NewReversal { terminal: tid("T9999999"), ..void("R-1", "P-1", MEDICAL_FEN) };
    let err = store.record_reversal_created(elsewhere).await.unwrap_err();
    assert!(matches!(err, CreateReversalError::UnknownTerminal { ref terminal, .. } if terminal == "T9999999"));

    let err = store.record_reversal_created(void("P-2", "P-1", MEDICAL_FEN)).await.unwrap_err();
    assert_eq!(err, CreateReversalError::DuplicateId { id: "P-2".to_owned(), existing: "payment" });

    // Nothing refused was written.
    assert!(store.reversals_of(&reference("P-1")).await.unwrap().is_empty());

    let first = store.record_reversal_created(void("R-1", "P-1", MEDICAL_FEN)).await.unwrap();
    assert_eq!(first.state, PaymentState::Created);
    let err = store.record_reversal_created(void("R-1", "P-1", MEDICAL_FEN)).await.unwrap_err();
    assert_eq!(err, CreateReversalError::DuplicateId { id: "R-1".to_owned(), existing: "reversal" });

    // A second reversal while the first is under way.
    let refund = new_reversal("R-2", "P-1", ReversalKind::Refund, 100);
    let err = store.record_reversal_created(refund).await.unwrap_err();
    assert_eq!(
        err,
        CreateReversalError::OtherReversal {
            id: "R-2".to_owned(),
            payment: "P-1".to_owned(),
            other: "R-1".to_owned(),
            kind: ReversalKind::Void,
            state: PaymentState::Created,
        }
    );
    assert!(err.to_string().contains("void R-1 created"), "{err}");

    // A reversal's reference is not free for a payment either.
    let err = store.record_payment_created(new_payment("R-1", &line(3))).await.unwrap_err();
    assert!(matches!(err, zhengjiao::journal::CreatePaymentError::DuplicateId { .. }), "{err:?}");

    // Once approved, the payment is voided: nothing more to reverse.
    store.transition_reversal(&reference("R-1"), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    store
        .transition_reversal(&reference("R-1"), PaymentState::Approved, reversal_said(MEDICAL_FEN, 9, "000001"))
        .await
        .unwrap();
    let err = store.record_reversal_created(void("R-3", "P-1", MEDICAL_FEN)).await.unwrap_err();
    assert!(matches!(err, CreateReversalError::PaymentNotReversible { state: PaymentState::Voided, .. }), "{err:?}");
}

#[tokio::test]
async fn the_reversal_state_machine_refuses_moves_it_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..1), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    pay(&store, "P-1", 0, 1).await;
    store.record_reversal_created(new_reversal("R-1", "P-1", ReversalKind::Void, MEDICAL_FEN)).await.unwrap();
    let id = reference("R-1");

    let err = store.transition_reversal(&reference("R-404"), PaymentState::Sent, TerminalSaid::default()).await;
    assert_eq!(err.unwrap_err(), TransitionError::UnknownReversal { id: "R-404".to_owned() });
    let err = store.transition_reversal(&id, PaymentState::Approved, reversal_said(1, 2, "000001")).await.unwrap_err();
    assert_eq!(
        err,
        TransitionError::ReversalNotAllowed {
            id: "R-1".to_owned(),
            from: PaymentState::Created,
            to: PaymentState::Approved
        }
    );
    store.transition_reversal(&id, PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    store.transition_reversal(&id, PaymentState::Approved, reversal_said(MEDICAL_FEN, 2, "000001")).await.unwrap();
    for to in [PaymentState::Forwarded, PaymentState::Voided, PaymentState::Refunded] {
        let err = store.transition_reversal(&id, to, TerminalSaid::default()).await.unwrap_err();
        assert!(matches!(err, TransitionError::ReversalNotAllowed { from: PaymentState::Approved, .. }), "{err:?}");
    }
    assert_eq!(store.reversal_history(&id).await.unwrap().len(), 3);
}

#[tokio::test]
async fn an_approved_void_releases_the_line_and_queues_the_reversal_with_its_own_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..1), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    pay(&store, "P-1", 0, 1).await;
    store.mark_forwarded("P-1", "TV-1").await.unwrap();

    let out = reverse(
        &store,
        new_reversal("R-1", "P-1", ReversalKind::Void, MEDICAL_FEN),
        reversal_said(MEDICAL_FEN, 7, "000001"),
    )
    .await;
    assert_eq!(out.from, PaymentState::Sent);
    assert_eq!(out.reversal.state, PaymentState::Approved);
    assert_eq!(out.reversal.pos.trace.unwrap().as_str(), "000007");
    let paid = out.payment.expect("the payment moved too");
    assert_eq!(paid.from, PaymentState::Forwarded);
    assert_eq!(paid.payment.state, PaymentState::Voided);
    assert_eq!(paid.effect, Effect::Reversed { entry_id: Some("P-1-reversal".to_owned()) });
    assert_eq!(paid.payment.pos.trace.unwrap().as_str(), "000001", "the payment keeps the sale's POS data");
    assert_eq!(paid.payment.pos.date.unwrap().as_str(), "20201021", "the sale's date, for a later refund");
    assert_eq!(out.reversal.pos.date.unwrap().as_str(), "20201021");

    let stored = store.roster_line(&line(0).serial, zhengjiao::domain::Insurance::Medical, 2020).await.unwrap();
    assert_eq!(stored.unwrap().paid_by, None);
    let outbox = store.pending_outbox(10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    let entry = &outbox[0];
    assert_eq!((entry.kind, entry.reverses.as_deref()), (EntryKind::Reversal, Some("P-1")));
    assert_eq!(entry.payload["amount"], "280.00");
    assert_eq!(entry.payload["trace"], "000007");
    assert_eq!(entry.payload["batch"], "000001");
    assert_eq!(entry.payload["rrn"], "201021180000");

    // The payment's history holds the void's own numbers and names the reversal.
    let history = store.payment_history(&reference("P-1")).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!((last.from, last.to), (Some(PaymentState::Forwarded), PaymentState::Voided));
    assert_eq!(last.said.trace.unwrap().as_str(), "000007");
    assert_eq!(last.said.code.unwrap().as_str(), "00");
    assert!(last.said.note.as_deref().unwrap().contains("void R-1"), "{:?}", last.said.note);
    let steps: Vec<_> =
        store.reversal_history(&reference("R-1")).await.unwrap().iter().map(|h| (h.from, h.to)).collect();
    assert_eq!(
        steps,
        [
            (None, PaymentState::Created),
            (Some(PaymentState::Created), PaymentState::Sent),
            (Some(PaymentState::Sent), PaymentState::Approved)
        ]
    );
    assert_eq!(store.reversal(&reference("R-1")).await.unwrap(), Some(out.reversal));
}

#[tokio::test]
async fn an_approved_refund_reverses_its_own_amount() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..1), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    pay(&store, "P-1", 0, 1).await;

    let out = reverse(&store, new_reversal("R-1", "P-1", ReversalKind::Refund, 10_000), {
        TerminalSaid { amount: None, ..reversal_said(0, 31, "000002") }
    })
    .await;
    let paid = out.payment.unwrap();
    assert_eq!((paid.from, paid.payment.state), (PaymentState::Approved, PaymentState::Refunded));
    assert_eq!(out.reversal.kind, ReversalKind::Refund);
    let stored = store.roster_line(&line(0).serial, zhengjiao::domain::Insurance::Medical, 2020).await.unwrap();
    assert_eq!(stored.unwrap().paid_by, None);

    let outbox = store.pending_outbox(10).await.unwrap();
    let ids: Vec<_> = outbox.iter().map(|e| e.entry_id.as_str()).collect();
    assert_eq!(ids, ["P-1", "P-1-reversal"], "the payment entry was never forwarded: both go, in order");
    let reversal = &outbox[1].payload;
    assert_eq!(reversal["amount"], "100.00");
    assert_eq!(reversal["trace"], "000031");
    assert_eq!(reversal["batch"], "000002");
    assert_eq!(reversal["kind"], "reversal");
    assert_eq!(outbox[0].payload["amount"], "280.00");
}

#[tokio::test]
async fn a_declined_void_leaves_the_payment_approved_and_allows_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..1), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    pay(&store, "P-1", 0, 1).await;

    let r1 = reference("R-1");
    store.record_reversal_created(new_reversal("R-1", "P-1", ReversalKind::Void, MEDICAL_FEN)).await.unwrap();
    store.transition_reversal(&r1, PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    let out = store.transition_reversal(&r1, PaymentState::Declined, declined()).await.unwrap();
    assert_eq!(out.payment, None);
    assert_eq!(out.reversal.state, PaymentState::Declined);
    assert_eq!(out.reversal.pos.code.unwrap().as_str(), "05");

    let p = store.payment(&reference("P-1")).await.unwrap().unwrap();
    assert_eq!(p.state, PaymentState::Approved);
    let stored = store.roster_line(&line(0).serial, zhengjiao::domain::Insurance::Medical, 2020).await.unwrap();
    assert_eq!(stored.unwrap().paid_by, Some(reference("P-1")));
    assert!(store.pending_outbox(10).await.unwrap().iter().all(|e| e.kind == EntryKind::Payment));

    // Another try is allowed; the listings see both.
    store.record_reversal_created(new_reversal("R-2", "P-1", ReversalKind::Void, MEDICAL_FEN)).await.unwrap();
    let of: Vec<_> = store.reversals_of(&reference("P-1")).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(of, [reference("R-1"), reference("R-2")]);
    let declined: Vec<_> = store.reversals_in(&[PaymentState::Declined]).await.unwrap();
    assert_eq!(declined.iter().map(|r| r.id).collect::<Vec<_>>(), [reference("R-1")]);
    let open_ones = store.reversals_in(&[PaymentState::Created, PaymentState::Sent, PaymentState::Unknown]).await;
    assert_eq!(open_ones.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [reference("R-2")]);
    assert!(store.reversals_in(&[]).await.unwrap().is_empty());

    // Lost link, then QUERY: unknown -> approved voids the payment.
    let r2 = reference("R-2");
    store.transition_reversal(&r2, PaymentState::Unknown, TerminalSaid::note("link lost")).await.unwrap();
    let out = store.transition_reversal(&r2, PaymentState::Approved, reversal_said(MEDICAL_FEN, 12, "000001")).await;
    assert_eq!(out.unwrap().payment.unwrap().payment.state, PaymentState::Voided);
}

#[tokio::test]
async fn approvals_still_to_reverse_are_found_again_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let store = open(&path).await;
    store.import_roster(lines(0..4), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();

    // P-SIB: approved for a person already paid on another line (P-OK's).
    for (id, n) in [("P-OK", 0), ("P-SIB", 3)] {
        store.record_payment_created(new_payment(id, &line(n))).await.unwrap();
        store.transition(&reference(id), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    }
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE roster_lines SET id_number = ?1 WHERE serial = 'ZJ-0000003'", [id_number(0).as_str()])
        .unwrap();
    let ok = store.transition(&reference("P-OK"), PaymentState::Approved, approved(MEDICAL_FEN, 1)).await.unwrap();
    assert!(matches!(ok.effect, Effect::Bound { .. }), "{:?}", ok.effect);
    let sib = store.transition(&reference("P-SIB"), PaymentState::Approved, approved(MEDICAL_FEN, 2)).await.unwrap();
    assert_eq!(sib.effect, Effect::LineAlreadyPaid { by: "P-OK".to_owned() });
    // P-AMT: approved with no amount; P-DIFF: approved for 0.01.
    for (id, n, said) in
        [("P-AMT", 1, TerminalSaid { amount: None, ..approved(MEDICAL_FEN, 3) }), ("P-DIFF", 2, approved(1, 4))]
    {
        store.record_payment_created(new_payment(id, &line(n))).await.unwrap();
        store.transition(&reference(id), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
        let out = store.transition(&reference(id), PaymentState::Approved, said).await.unwrap();
        assert!(matches!(out.effect, Effect::AmountDiffers { .. }), "{id}: {:?}", out.effect);
    }
    let ids = |ps: Vec<zhengjiao::journal::Payment>| ps.into_iter().map(|p| p.id).collect::<Vec<_>>();
    let wrong = [reference("P-SIB"), reference("P-AMT"), reference("P-DIFF")];
    assert_eq!(ids(store.payments_to_reverse().await.unwrap()), wrong);
    assert!(store.is_bound(&reference("P-OK")).await.unwrap());
    for id in &wrong {
        assert!(!store.is_bound(id).await.unwrap(), "{}", id.as_str());
    }

    // A crash before the automatic voids started: the reopened journal still lists them.
    store.close().await;
    drop(store);
    let store = open(&path).await;
    let listed = store.payments_to_reverse().await.unwrap();
    assert_eq!(ids(listed.clone()), wrong);
    assert!(listed.iter().all(|p| p.state == PaymentState::Approved));

    // A reversal under way takes a payment off the list; a declined one leaves it off (an operator's).
    let r_amt = reference("R-AMT");
    store.record_reversal_created(new_reversal("R-AMT", "P-AMT", ReversalKind::Void, MEDICAL_FEN)).await.unwrap();
    assert_eq!(ids(store.payments_to_reverse().await.unwrap()), [reference("P-SIB"), reference("P-DIFF")]);
    store.transition_reversal(&r_amt, PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    store.transition_reversal(&r_amt, PaymentState::Declined, declined()).await.unwrap();
    assert_eq!(ids(store.payments_to_reverse().await.unwrap()), [reference("P-SIB"), reference("P-DIFF")]);

    // A reversal the terminal never carried out puts it back on the list.
    let r_diff = reference("R-DIFF");
    store.record_reversal_created(new_reversal("R-DIFF", "P-DIFF", ReversalKind::Void, 1)).await.unwrap();
    store.transition_reversal(&r_diff, PaymentState::Unknown, TerminalSaid::note("crash before send")).await.unwrap();
    assert_eq!(ids(store.payments_to_reverse().await.unwrap()), [reference("P-SIB")]);
    store.transition_reversal(&r_diff, PaymentState::NotCharged, TerminalSaid::default()).await.unwrap();
    assert_eq!(ids(store.payments_to_reverse().await.unwrap()), [reference("P-SIB"), reference("P-DIFF")]);

    // An approved void ends it; the bound payment's line is untouched.
    let out = reverse(
        &store,
        new_reversal("R-SIB", "P-SIB", ReversalKind::Void, MEDICAL_FEN),
        reversal_said(MEDICAL_FEN, 5, "000001"),
    )
    .await;
    assert_eq!(out.payment.unwrap().effect, Effect::Reversed { entry_id: None });
    assert_eq!(ids(store.payments_to_reverse().await.unwrap()), [reference("P-DIFF")]);
    assert!(store.is_bound(&reference("P-OK")).await.unwrap());
}

fn options_at(start: time::OffsetDateTime) -> JournalOptions {
    JournalOptions { clock: Clock::starting_at(start), ..options() }
}

#[tokio::test]
async fn payments_are_listed_by_day_state_terminal_point_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let other_point = |n: u32| {
        let mut l = line(n);
        l.collection_point = CollectionPointCode::parse("WD-002").unwrap();
        l
    };
    let second = Terminal { id: tid("T0000002"), name: "T02".to_owned(), ..terminal() };
    {
        // 21 October 2020, 23:50 at +08:00 (15:50 UTC): still the 21st locally.
        let store = SqliteStore::open(&path, options_at(datetime!(2020-10-21 15:50 UTC))).await.unwrap();
        store.import_roster(vec![line(0), line(1), other_point(2), other_point(3), line(4)], false).await.unwrap();
        store.register_terminal(terminal()).await.unwrap();
        store.register_terminal(second.clone()).await.unwrap();
        pay(&store, "P-0", 0, 1).await;
        store.record_payment_created(new_payment("P-2", &line(2))).await.unwrap();
        store.close().await;
    }
    // The 22nd, 00:10 at +08:00.
    let store = SqliteStore::open(&path, options_at(datetime!(2020-10-21 16:10 UTC))).await.unwrap();
    store.record_payment_created(new_payment("P-1", &line(1))).await.unwrap();
    let mut on_second = new_payment("P-3", &line(3));
    on_second.terminal = second.id;
    store.record_payment_created(on_second).await.unwrap();
    store.record_payment_created(new_payment("P-4", &line(4))).await.unwrap();

    let ids =
        |ps: Vec<zhengjiao::journal::Payment>| ps.into_iter().map(|p| p.id.as_str().to_owned()).collect::<Vec<_>>();
    let all = PaymentFilter::all(100);
    assert_eq!(ids(store.payments(all.clone()).await.unwrap()), ["P-0", "P-2", "P-1", "P-3", "P-4"]);
    assert_eq!(ids(store.payments(PaymentFilter { limit: 2, ..all.clone() }).await.unwrap()), ["P-0", "P-2"]);
    assert!(store.payments(PaymentFilter { limit: 0, ..all.clone() }).await.unwrap().is_empty());

    let day = |d| PaymentFilter { date: Some(d), ..all.clone() };
    assert_eq!(ids(store.payments(day(date!(2020 - 10 - 21))).await.unwrap()), ["P-0", "P-2"]);
    assert_eq!(ids(store.payments(day(date!(2020 - 10 - 22))).await.unwrap()), ["P-1", "P-3", "P-4"]);
    assert!(store.payments(day(date!(2020 - 10 - 20))).await.unwrap().is_empty());

    let state = PaymentFilter { state: Some(PaymentState::Created), ..all.clone() };
    assert_eq!(ids(store.payments(state.clone()).await.unwrap()), ["P-2", "P-1", "P-3", "P-4"]);
    let approved = PaymentFilter { state: Some(PaymentState::Approved), ..all.clone() };
    assert_eq!(ids(store.payments(approved).await.unwrap()), ["P-0"]);

    let on_t2 = PaymentFilter { terminal: Some(second.id), ..all.clone() };
    assert_eq!(ids(store.payments(on_t2).await.unwrap()), ["P-3"]);
    let at_point =
        PaymentFilter { collection_point: Some(CollectionPointCode::parse("WD-002").unwrap()), ..all.clone() };
    assert_eq!(ids(store.payments(at_point.clone()).await.unwrap()), ["P-2", "P-3"]);
    let l = line(4);
    let of_line = PaymentFilter {
        line: Some(LineKey { serial: l.serial.clone(), insurance: l.insurance, year: l.year }),
        ..all.clone()
    };
    assert_eq!(ids(store.payments(of_line).await.unwrap()), ["P-4"]);

    // Conditions combine.
    let combined = PaymentFilter { date: Some(date!(2020 - 10 - 22)), ..at_point };
    assert_eq!(ids(store.payments(combined).await.unwrap()), ["P-3"]);
    let combined = PaymentFilter { date: Some(date!(2020 - 10 - 21)), terminal: Some(tid(TERMINAL)), ..state };
    assert_eq!(ids(store.payments(combined).await.unwrap()), ["P-2"]);
}

#[tokio::test]
async fn batch_totals_count_gross_like_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&journal_path(&dir)).await;
    store.import_roster(lines(0..6), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    let b1 = batch("000001");
    let t = tid(TERMINAL);
    assert_eq!(store.batch_totals(&t, &b1).await.unwrap(), BatchTotals::default());

    pay(&store, "P-A", 0, 1).await; // voided later in the same batch
    pay(&store, "P-B", 1, 2).await; // stays approved
    pay(&store, "P-D", 3, 4).await; // refunded in batch 2, partly
    store.mark_forwarded("P-B", "TV-B").await.unwrap();
    // Declined, and never charged: nowhere.
    store.record_payment_created(new_payment("P-C", &line(2))).await.unwrap();
    store.transition(&reference("P-C"), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    store.transition(&reference("P-C"), PaymentState::Declined, declined()).await.unwrap();
    store.record_payment_created(new_payment("P-E", &line(4))).await.unwrap();
    store.transition(&reference("P-E"), PaymentState::Unknown, TerminalSaid::default()).await.unwrap();
    store.transition(&reference("P-E"), PaymentState::NotCharged, TerminalSaid::default()).await.unwrap();
    // A declined void counts nowhere either.
    store.record_reversal_created(new_reversal("R-X", "P-B", ReversalKind::Void, MEDICAL_FEN)).await.unwrap();
    store.transition_reversal(&reference("R-X"), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
    store.transition_reversal(&reference("R-X"), PaymentState::Declined, declined()).await.unwrap();

    reverse(
        &store,
        new_reversal("R-A", "P-A", ReversalKind::Void, MEDICAL_FEN),
        reversal_said(MEDICAL_FEN, 5, "000001"),
    )
    .await;
    reverse(&store, new_reversal("R-D", "P-D", ReversalKind::Refund, 8_000), reversal_said(8_000, 1, "000002")).await;

    let totals = store.batch_totals(&t, &b1).await.unwrap();
    assert_eq!(
        totals,
        BatchTotals {
            sale_count: 3,
            sale_fen: 3 * MEDICAL_FEN,
            void_count: 1,
            void_fen: MEDICAL_FEN,
            refund_count: 0,
            refund_fen: 0
        },
        "a voided sale is a sale and a void"
    );
    let totals = store.batch_totals(&t, &batch("000002")).await.unwrap();
    assert_eq!(totals, BatchTotals { refund_count: 1, refund_fen: 8_000, ..BatchTotals::default() });
    assert_eq!(store.batch_totals(&tid("T0000002"), &b1).await.unwrap(), BatchTotals::default());
}

#[tokio::test]
async fn settlements_are_recorded_balanced_or_not_and_listed_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let store = open(&path).await;
    store.register_terminal(terminal()).await.unwrap();
    let second = Terminal { id: tid("T0000002"), name: "T02".to_owned(), ..terminal() };
    store.register_terminal(second.clone()).await.unwrap();
    let t = tid(TERMINAL);
    let journal =
        BatchTotals { sale_count: 2, sale_fen: 56_000, void_count: 1, void_fen: 28_000, ..Default::default() };

    let first = store.record_settlement(&t, &batch("000001"), journal, journal).await.unwrap();
    assert!(first.balanced);
    assert_eq!((first.terminal, first.batch), (t, batch("000001")));
    assert!(first.at.ends_with("+08:00"));
    let short = BatchTotals { sale_count: 1, sale_fen: 28_000, ..journal };
    let second_rec = store.record_settlement(&second.id, &batch("000007"), short, journal).await.unwrap();
    assert!(!second_rec.balanced);
    assert_eq!((second_rec.terminal_totals, second_rec.journal_totals), (short, journal));
    let third = store.record_settlement(&t, &batch("000002"), short, short).await.unwrap();
    assert!(third.balanced);

    let all = store.settlements(None).await.unwrap();
    assert_eq!(all, vec![third.clone(), second_rec.clone(), first.clone()]);
    assert_eq!(store.settlements(Some(&t)).await.unwrap(), vec![third, first]);
    assert_eq!(store.settlements(Some(&second.id)).await.unwrap(), vec![second_rec]);

    // The batches are marked settled (and recorded, the journal had not seen them).
    let settled: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM terminal_batches WHERE settled_at IS NOT NULL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(settled, 3);

    let err = store.record_settlement(&tid("T9999999"), &batch("000001"), journal, journal).await.unwrap_err();
    assert_eq!(err, SettlementError::UnknownTerminal { terminal: "T9999999".to_owned() });
}

#[tokio::test]
async fn the_reversal_history_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let store = open(&path).await;
    store.import_roster(lines(0..1), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    pay(&store, "P-1", 0, 1).await;
    store.record_reversal_created(new_reversal("R-1", "P-1", ReversalKind::Void, MEDICAL_FEN)).await.unwrap();
    let raw = Connection::open(&path).unwrap();
    let err = raw.execute("UPDATE reversal_transitions SET to_state = 'approved'", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = raw.execute("DELETE FROM reversal_transitions", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

/// Schema versions 1 and 2 exactly as released, written by hand (not from the crate's constants).
const HAND_WRITTEN_V2: &str = "
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
CREATE TABLE terminals (
    id TEXT PRIMARY KEY, collection_point TEXT NOT NULL, merchant_id TEXT, link TEXT NOT NULL,
    registered_at TEXT NOT NULL, updated_at TEXT
) STRICT;
CREATE TABLE terminal_batches (
    terminal_id TEXT NOT NULL REFERENCES terminals (id), batch_no TEXT NOT NULL, first_seen_at TEXT NOT NULL,
    settled_at TEXT, PRIMARY KEY (terminal_id, batch_no)
) STRICT;
CREATE TABLE payments (
    id TEXT PRIMARY KEY, line_id INTEGER NOT NULL REFERENCES roster_lines (id),
    amount_fen INTEGER NOT NULL CHECK (amount_fen > 0), terminal_id TEXT NOT NULL REFERENCES terminals (id),
    till TEXT NOT NULL, operator TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('created', 'sent', 'approved', 'declined', 'unknown',
                                         'not_charged', 'forwarded', 'voided', 'refunded')),
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, response_code TEXT, response_text TEXT, trace TEXT,
    batch_no TEXT, rrn TEXT, auth_code TEXT, card_masked TEXT, approved_fen INTEGER
) STRICT;
CREATE INDEX payments_by_line ON payments (line_id);
CREATE INDEX payments_by_state ON payments (state);
CREATE UNIQUE INDEX payments_one_under_way_per_line ON payments (line_id)
    WHERE state IN ('created', 'sent', 'unknown');
ALTER TABLE roster_lines ADD COLUMN paid_by TEXT REFERENCES payments (id);
CREATE UNIQUE INDEX roster_lines_by_payment ON roster_lines (paid_by) WHERE paid_by IS NOT NULL;
CREATE TABLE payment_transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, payment_id TEXT NOT NULL REFERENCES payments (id), at TEXT NOT NULL,
    from_state TEXT, to_state TEXT NOT NULL, response_code TEXT, response_text TEXT, trace TEXT, batch_no TEXT,
    rrn TEXT, auth_code TEXT, card_masked TEXT, amount_fen INTEGER, note TEXT
) STRICT;
CREATE INDEX payment_transitions_by_payment ON payment_transitions (payment_id, seq);
CREATE TRIGGER payment_transitions_no_update BEFORE UPDATE ON payment_transitions
BEGIN SELECT RAISE(ABORT, 'payment_transitions is append-only'); END;
CREATE TRIGGER payment_transitions_no_delete BEFORE DELETE ON payment_transitions
BEGIN SELECT RAISE(ABORT, 'payment_transitions is append-only'); END;
CREATE TABLE ledger_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, entry_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('payment', 'reversal')), payment_id TEXT NOT NULL REFERENCES payments (id),
    reverses TEXT REFERENCES ledger_outbox (entry_id), payload TEXT NOT NULL CHECK (json_valid(payload)),
    created_at TEXT NOT NULL, forwarded_at TEXT, tax_voucher_no TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, dead_letter TEXT, CHECK ((kind = 'payment') = (reverses IS NULL))
) STRICT;
CREATE INDEX ledger_outbox_pending ON ledger_outbox (seq) WHERE forwarded_at IS NULL AND dead_letter IS NULL;
CREATE TABLE settlements (
    id INTEGER PRIMARY KEY, terminal_id TEXT NOT NULL REFERENCES terminals (id), batch_no TEXT NOT NULL,
    terminal_sale_count INTEGER NOT NULL, terminal_sale_fen INTEGER NOT NULL, terminal_void_count INTEGER NOT NULL,
    terminal_void_fen INTEGER NOT NULL, terminal_refund_count INTEGER NOT NULL, terminal_refund_fen INTEGER NOT NULL,
    journal_sale_count INTEGER NOT NULL, journal_sale_fen INTEGER NOT NULL, journal_void_count INTEGER NOT NULL,
    journal_void_fen INTEGER NOT NULL, journal_refund_count INTEGER NOT NULL, journal_refund_fen INTEGER NOT NULL,
    matches INTEGER NOT NULL CHECK (matches IN (0, 1)), at TEXT NOT NULL,
    FOREIGN KEY (terminal_id, batch_no) REFERENCES terminal_batches (terminal_id, batch_no)
) STRICT;
PRAGMA application_id = 1514818124;
PRAGMA user_version = 2;
";

#[tokio::test]
async fn opening_a_version_2_journal_migrates_it_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    {
        let raw = Connection::open(&path).unwrap();
        raw.execute_batch(HAND_WRITTEN_V2).unwrap();
        let l = line(7);
        raw.execute(
            "INSERT INTO roster_lines (serial, insurance, year, id_number, name, amount_due_fen, hardship,
                 collection_point, street, community, content_hash, imported_at)
             VALUES (?1, 'medical', 2020, ?2, '张三', 28000, 'none', ?3, '光明路街道', NULL, 'old', '2020-09-20T08:00:00.000000+08:00')",
            rusqlite::params![l.serial.as_str(), l.id_number.as_str(), POINT],
        )
        .unwrap();
        raw.execute(
            "INSERT INTO terminals (id, collection_point, merchant_id, link, registered_at)
             VALUES (?1, ?2, '898410473990001', 'tcp:127.0.0.1:9100', '2020-10-20T08:00:00.000000+08:00')",
            rusqlite::params![TERMINAL, POINT],
        )
        .unwrap();
        raw.execute_batch(
            "INSERT INTO payments (id, line_id, amount_fen, terminal_id, till, operator, state, created_at, updated_at,
                                   response_code, trace, batch_no, approved_fen)
             VALUES ('P-OLD', 1, 28000, 'T0000001', '01', '0001', 'approved', '2020-10-21T10:00:00.000000+08:00',
                     '2020-10-21T10:00:05.000000+08:00', '00', '000003', '000001', 28000);
             UPDATE roster_lines SET paid_by = 'P-OLD' WHERE id = 1;
             INSERT INTO ledger_outbox (entry_id, kind, payment_id, payload, created_at)
             VALUES ('P-OLD', 'payment', 'P-OLD', '{}', '2020-10-21T10:00:05.000000+08:00');
             INSERT INTO payment_transitions (seq, payment_id, at, from_state, to_state)
             VALUES (41, 'P-OLD', '2020-10-21T10:00:00.000000+08:00', NULL, 'created'),
                    (42, 'P-OLD', '2020-10-21T10:00:05.000000+08:00', 'created', 'approved');",
        )
        .unwrap();
    }

    let store = open(&path).await;
    assert_eq!(store.settings().await.unwrap().schema_version, 4);
    // Version 4 numbered the append-only tables without AUTOINCREMENT, keeping their rows and numbers.
    let history = store.payment_history(&reference("P-OLD")).await.unwrap();
    assert_eq!(history.iter().map(|h| (h.seq, h.to)).collect::<Vec<_>>(), {
        vec![(41, PaymentState::Created), (42, PaymentState::Approved)]
    });
    {
        let raw = Connection::open(&path).unwrap();
        let autoincrement: i64 = raw
            .query_row("SELECT count(*) FROM sqlite_master WHERE sql LIKE '%AUTOINCREMENT%'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(autoincrement, 0);
        let reverses: String = raw
            .query_row(
                "SELECT \"table\" FROM pragma_foreign_key_list('ledger_outbox') WHERE \"from\" = 'reverses'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(reverses, "ledger_outbox", "the outbox's reference to itself survives the rebuild");
        let objects: Vec<String> = raw
            .prepare("SELECT name FROM sqlite_master WHERE name LIKE '%transitions%' OR name LIKE 'ledger_outbox%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            objects,
            [
                "ledger_outbox",
                "ledger_outbox_pending",
                "payment_transitions",
                "payment_transitions_by_payment",
                "payment_transitions_no_delete",
                "payment_transitions_no_update",
                "reversal_transitions",
                "reversal_transitions_by_reversal",
                "reversal_transitions_no_delete",
                "reversal_transitions_no_update",
            ]
        );
    }
    // The old terminal is named by its id until registered again.
    let terminals = store.terminals().await.unwrap();
    assert_eq!(terminals.len(), 1);
    assert_eq!(terminals[0].name, TERMINAL);
    assert_eq!(terminals[0].merchant_id.as_deref(), Some("898410473990001"));
    store.register_terminal(terminal()).await.unwrap();
    assert_eq!(store.terminals().await.unwrap(), vec![terminal()]);

    // The old payment lists, counts, and can be voided through a reversal.
    let listed = store.payments(PaymentFilter { date: Some(date!(2020 - 10 - 21)), ..PaymentFilter::all(10) }).await;
    assert_eq!(listed.unwrap().len(), 1);
    let t = tid(TERMINAL);
    assert_eq!(store.batch_totals(&t, &batch("000001")).await.unwrap().sale_fen, MEDICAL_FEN);
    let out = reverse(&store, new_reversal("R-OLD", "P-OLD", ReversalKind::Void, MEDICAL_FEN), {
        reversal_said(MEDICAL_FEN, 4, "000001")
    })
    .await;
    assert_eq!(out.payment.unwrap().effect, Effect::Reversed { entry_id: Some("P-OLD-reversal".to_owned()) });
    let stored = store.roster_line(&line(7).serial, zhengjiao::domain::Insurance::Medical, 2020).await.unwrap();
    assert_eq!(stored.unwrap().paid_by, None);
    assert_eq!(store.batch_totals(&t, &batch("000001")).await.unwrap().void_count, 1);
    // New history rows come after the old ones; the histories stay append-only.
    let history = store.payment_history(&reference("P-OLD")).await.unwrap();
    assert!(history.len() > 2 && history.windows(2).all(|w| w[0].seq < w[1].seq), "{history:?}");
    let raw = Connection::open(&path).unwrap();
    let err = raw.execute("DELETE FROM payment_transitions WHERE seq = 41", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let outbox = store.outbox_entry("P-OLD-reversal").await.unwrap().unwrap();
    assert_eq!(outbox.reverses.as_deref(), Some("P-OLD"));
}
