//! Daily reconciliation (日清日结): for one local day (UTC+8), the journal's ledger entries against the
//! ledger's `/v1/summary` and against the terminals' settlements, every difference listed.
//!
//! Decisions where the contract is silent (docs/api.md, "Reconciliation"):
//! - **The day of an entry** is the local date of its `occurred_at`, as the ledger sums it; the
//!   journal's side is every outbox entry of that day (forwarded, queued or dead-lettered).
//! - **Journal vs ledger**, per collection point and insurance (the ledger's channels added up): the
//!   counts and totals of payments and of reversals. Then every journal entry of the day is looked up
//!   (`GET /v1/entries/{id}`, those of differing groups first, at most [`MAX_LOOKUPS`] per run), since
//!   an entry the ledger lost and one the journal never wrote cancel out in the totals: those the
//!   ledger lacks are listed as missing at the ledger, with their state in the journal. What the ledger
//!   holds beyond the journal's entries cannot be named from a summary: it is listed as a surplus per
//!   group ("unknown to the journal"), in counts and amounts. Past the bound the remaining entries are
//!   judged by the totals alone, and `lookups.truncated` says so.
//! - **Terminals vs journal**, per collection point: the net (sales - voids - refunds) of the terminal
//!   batches settled that day (the latest settlement of each batch) against the net of the journal's
//!   entries of that day (payments - reversals). Entries whose terminal batch was not settled that day
//!   are listed, and so is every settlement of that day that did not balance.
//! - Balanced only when all three agree to the fen and nothing is missing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use tokio::task::JoinSet;

use super::answer::ContractError;
use super::client::{HeldEntry, LedgerClient, SendError};
use crate::domain::{CollectionPointCode, Fen};
use crate::journal::{OutboxEntry, ReadError, Store};

/// Most `GET /v1/entries/{id}` lookups in one reconciliation; past it the list of missing entries is
/// marked truncated.
pub const MAX_LOOKUPS: usize = 10_000;
/// Lookups in flight at once.
const LOOKUP_CONCURRENCY: usize = 32;

/// Why a reconciliation could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// The journal could not be read.
    #[error("journal: {0}")]
    Journal(#[from] ReadError),
    /// The ledger did not answer usably.
    #[error("ledger: {0}")]
    Ledger(#[from] SendError),
    /// A stored entry's payload lacks a field or holds a bad one.
    #[error("journal entry {entry_id}: payload field {field} is missing or malformed")]
    BadEntry {
        /// The entry.
        entry_id: String,
        /// The field.
        field: &'static str,
    },
}

/// Counts and totals of one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sums {
    payments: u64,
    payment_fen: i64,
    reversals: u64,
    reversal_fen: i64,
}

impl Sums {
    fn add(&mut self, reversal: bool, fen: i64) {
        if reversal {
            self.reversals = self.reversals.saturating_add(1);
            self.reversal_fen = self.reversal_fen.saturating_add(fen);
        } else {
            self.payments = self.payments.saturating_add(1);
            self.payment_fen = self.payment_fen.saturating_add(fen);
        }
    }

    fn net(&self) -> i64 {
        self.payment_fen.saturating_sub(self.reversal_fen)
    }

    fn view(&self) -> Totals {
        Totals {
            payments: self.payments,
            payment_total: yuan(self.payment_fen),
            reversals: self.reversals,
            reversal_total: yuan(self.reversal_fen),
            net: yuan(self.net()),
        }
    }
}

fn yuan(fen: i64) -> String {
    // `Fen`'s Display carries the sign and handles i64::MIN.
    Fen::from_fen(fen).to_string()
}

/// Counts and totals (yuan strings with two decimals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Payments.
    pub payments: u64,
    /// Their total.
    pub payment_total: String,
    /// Reversals.
    pub reversals: u64,
    /// Their total.
    pub reversal_total: String,
    /// Payments minus reversals.
    pub net: String,
}

/// Journal against ledger for one collection point and insurance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InsuranceLine {
    /// 征缴网点.
    pub collection_point: String,
    /// `pension` or `medical`.
    pub insurance: String,
    /// The journal's entries of the day.
    pub journal: Totals,
    /// The ledger's summary.
    pub ledger: Totals,
    /// True when both agree to the fen.
    pub agrees: bool,
}

/// One terminal batch settled that day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettledBatch {
    /// 终端号.
    pub terminal_id: String,
    /// 批次号.
    pub batch: String,
    /// When it was settled.
    pub at: String,
    /// Whether the terminal's totals equalled the journal's at settlement.
    pub balanced: bool,
    /// The terminal's sales.
    pub sale_total: String,
    /// Its voids.
    pub void_total: String,
    /// Its refunds.
    pub refund_total: String,
    /// Sales - voids - refunds.
    pub net: String,
}

/// Terminals against journal for one collection point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PointSettlement {
    /// 征缴网点.
    pub collection_point: String,
    /// The batches settled that day (the latest settlement of each).
    pub settlements: Vec<SettledBatch>,
    /// Their net.
    pub terminal_net: String,
    /// The net of the journal's entries of the day.
    pub journal_net: String,
    /// Entries of the day whose terminal batch was not settled that day.
    pub unsettled_entries: Vec<String>,
    /// True when the nets agree to the fen.
    pub agrees: bool,
}

/// One difference, in words and figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `journal_vs_ledger`, `terminals_vs_journal` or `settlement_not_balanced`.
    pub what: &'static str,
    /// 征缴网点.
    pub collection_point: String,
    /// The insurance (journal vs ledger only).
    pub insurance: Option<String>,
    /// The figure: `payments`, `payment_total`, `reversals`, `reversal_total`, `net`, or
    /// `terminal/batch` for an unbalanced settlement.
    pub field: String,
    /// The journal's figure.
    pub journal: String,
    /// The other side's figure (the ledger's, or the terminals').
    pub other: String,
}

/// A journal entry of the day that the ledger does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingEntry {
    /// The entry.
    pub entry_id: String,
    /// `payment` or `reversal`.
    pub kind: String,
    /// 征缴网点.
    pub collection_point: String,
    /// The insurance.
    pub insurance: String,
    /// Its amount.
    pub amount: String,
    /// In the journal: `queued`, `dead_letter` or `forwarded`.
    pub journal_state: &'static str,
    /// The voucher the journal recorded, if any.
    pub tax_voucher_no: Option<String>,
    /// Why it matters.
    pub note: String,
}

/// What the ledger holds beyond the journal's entries, for one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Surplus {
    /// 征缴网点.
    pub collection_point: String,
    /// The insurance.
    pub insurance: String,
    /// Payments the ledger holds that the journal's entries do not account for.
    pub payments: i64,
    /// Their total.
    pub payment_total: String,
    /// Reversals likewise.
    pub reversals: i64,
    /// Their total.
    pub reversal_total: String,
    /// The summary cannot name them.
    pub note: String,
}

/// How many entries were looked up at the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lookups {
    /// Entries looked up.
    pub asked: usize,
    /// The bound ([`MAX_LOOKUPS`]).
    pub limit: usize,
    /// True when entries were left unasked because of the bound (they are judged by the totals alone).
    pub truncated: bool,
}

/// The result of a reconciliation (`GET /v1/reconcile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// The day, `YYYY-MM-DD`.
    pub date: String,
    /// The collection point asked for, or `null` for all.
    pub collection_point: Option<String>,
    /// True when terminals, journal and ledger agree to the fen and nothing is missing.
    pub balanced: bool,
    /// Journal against ledger, per collection point and insurance.
    pub lines: Vec<InsuranceLine>,
    /// Terminals against journal, per collection point.
    pub terminals: Vec<PointSettlement>,
    /// Every difference.
    pub differences: Vec<Difference>,
    /// Journal entries the ledger lacks.
    pub missing_at_ledger: Vec<MissingEntry>,
    /// What the ledger holds beyond the journal, per group.
    pub unknown_to_journal: Vec<Surplus>,
    /// The lookups made.
    pub lookups: Lookups,
}

/// One journal entry, read from its payload.
struct DayEntry {
    entry: OutboxEntry,
    point: String,
    insurance: String,
    reversal: bool,
    fen: i64,
    terminal_batch: Option<(String, String)>,
}

fn read_entry(entry: OutboxEntry) -> Result<DayEntry, ReconcileError> {
    let text = |field: &'static str| -> Result<String, ReconcileError> {
        entry
            .payload
            .get(field)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ReconcileError::BadEntry { entry_id: entry.entry_id.clone(), field })
    };
    let point = text("collection_point")?;
    let insurance = text("insurance")?;
    let amount = text("amount")?;
    let fen = Fen::from_yuan_str(&amount)
        .map_err(|_| ReconcileError::BadEntry { entry_id: entry.entry_id.clone(), field: "amount" })?
        .as_fen();
    let terminal_batch = match (text("terminal_id"), text("batch")) {
        (Ok(t), Ok(b)) => Some((t, b)),
        _ => None,
    };
    let reversal = entry.kind == crate::journal::EntryKind::Reversal;
    Ok(DayEntry { entry, point, insurance, reversal, fen, terminal_batch })
}

/// Reconciles `date` (UTC+8) for one collection point or all.
pub async fn reconcile<S: Store>(
    store: &S,
    client: &LedgerClient,
    date: time::Date,
    collection_point: Option<&CollectionPointCode>,
) -> Result<Reconciliation, ReconcileError> {
    let entries = store
        .ledger_entries_on(date, collection_point)
        .await?
        .into_iter()
        .map(read_entry)
        .collect::<Result<Vec<_>, _>>()?;
    let summary = client.summary(date, collection_point.map(CollectionPointCode::as_str)).await?;
    let settlements = store.settlements_on(date).await?;

    // Journal against ledger.
    let mut journal: BTreeMap<(String, String), Sums> = BTreeMap::new();
    for e in &entries {
        journal.entry((e.point.clone(), e.insurance.clone())).or_default().add(e.reversal, e.fen);
    }
    let mut ledger: BTreeMap<(String, String), Sums> = BTreeMap::new();
    for l in &summary.lines {
        if collection_point.is_some_and(|p| p.as_str() != l.collection_point) {
            continue;
        }
        // A total that is not an amount in fen, or sums that overflow, break the contract: the
        // reconciliation fails rather than compare numbers it cannot trust.
        let bad = |what: &str| {
            ReconcileError::Ledger(SendError::BadAnswer(ContractError::NotJson(format!(
                "summary line {}/{}: {what}",
                l.collection_point, l.insurance
            ))))
        };
        let fen = |d: rust_decimal::Decimal, what: &str| {
            Fen::from_decimal(d)
                .ok()
                .filter(|f| f.as_fen() >= 0)
                .map(Fen::as_fen)
                .ok_or_else(|| bad(&format!("{what} {d} is not a non-negative amount in fen")))
        };
        let payment_fen = fen(l.payment_total, "payment_total")?;
        let reversal_fen = fen(l.reversal_total, "reversal_total")?;
        let s = ledger.entry((l.collection_point.clone(), l.insurance.clone())).or_default();
        s.payments = s.payments.checked_add(l.payments).ok_or_else(|| bad("payments overflow"))?;
        s.payment_fen = s.payment_fen.checked_add(payment_fen).ok_or_else(|| bad("payment_total overflows"))?;
        s.reversals = s.reversals.checked_add(l.reversals).ok_or_else(|| bad("reversals overflow"))?;
        s.reversal_fen = s.reversal_fen.checked_add(reversal_fen).ok_or_else(|| bad("reversal_total overflows"))?;
    }
    let keys: BTreeSet<(String, String)> = journal.keys().chain(ledger.keys()).cloned().collect();
    let mut lines = Vec::new();
    let mut differences = Vec::new();
    let mut differing = BTreeSet::new();
    for key in &keys {
        let j = journal.get(key).copied().unwrap_or_default();
        let l = ledger.get(key).copied().unwrap_or_default();
        let agrees = j == l;
        if !agrees {
            differing.insert(key.clone());
            let figures = [
                ("payments", j.payments.to_string(), l.payments.to_string()),
                ("payment_total", yuan(j.payment_fen), yuan(l.payment_fen)),
                ("reversals", j.reversals.to_string(), l.reversals.to_string()),
                ("reversal_total", yuan(j.reversal_fen), yuan(l.reversal_fen)),
            ];
            for (field, jv, lv) in figures {
                if jv != lv {
                    differences.push(Difference {
                        what: "journal_vs_ledger",
                        collection_point: key.0.clone(),
                        insurance: Some(key.1.clone()),
                        field: field.to_owned(),
                        journal: jv,
                        other: lv,
                    });
                }
            }
        }
        lines.push(InsuranceLine {
            collection_point: key.0.clone(),
            insurance: key.1.clone(),
            journal: j.view(),
            ledger: l.view(),
            agrees,
        });
    }

    // Which entries the ledger lacks: every entry of the day is looked up (those of differing groups
    // first), since a missing entry and one the journal lacks can cancel out in the totals.
    let (mut to_ask, rest): (Vec<&DayEntry>, Vec<&DayEntry>) =
        entries.iter().partition(|e| differing.contains(&(e.point.clone(), e.insurance.clone())));
    to_ask.extend(rest);
    let truncated = to_ask.len() > MAX_LOOKUPS;
    let asked: Vec<&DayEntry> = to_ask.into_iter().take(MAX_LOOKUPS).collect();
    let held = look_up(client, asked.iter().map(|e| e.entry.entry_id.clone()).collect()).await?;
    let mut missing = Vec::new();
    let mut missing_sums: HashMap<(String, String), Sums> = HashMap::new();
    for e in &asked {
        let found = held.get(&e.entry.entry_id).cloned().flatten();
        let state = if e.entry.forwarded_at.is_some() {
            "forwarded"
        } else if e.entry.dead_letter.is_some() {
            "dead_letter"
        } else {
            "queued"
        };
        // The ledger may hold other content under the id (it then rejected ours): ours is missing.
        let other = found.as_ref().and_then(|h| differing_field(&e.entry.payload, &h.entry));
        match (found, other) {
            (Some(h), None) => {
                if e.entry.tax_voucher_no.as_ref().is_some_and(|mine| *mine != h.tax_voucher_no) {
                    tracing::warn!(entry = %e.entry.entry_id, "the ledger holds the entry under another voucher");
                }
            }
            (found, other) => {
                let note = match (state, other) {
                    (_, Some((field, theirs))) => format!(
                        "the ledger holds other content under this id ({field} {theirs}, voucher {})",
                        found.map(|h| h.tax_voucher_no).unwrap_or_default()
                    ),
                    ("forwarded", None) => format!(
                        "the journal recorded voucher {} but the ledger does not hold the entry",
                        e.entry.tax_voucher_no.as_deref().unwrap_or("?")
                    ),
                    ("dead_letter", None) => format!(
                        "rejected by the ledger: {}; replay with `zhengjiao ledger retry`",
                        e.entry.dead_letter.as_deref().unwrap_or("?")
                    ),
                    _ => "not yet forwarded (see `zhengjiao ledger status`)".to_owned(),
                };
                missing_sums.entry((e.point.clone(), e.insurance.clone())).or_default().add(e.reversal, e.fen);
                missing.push(MissingEntry {
                    entry_id: e.entry.entry_id.clone(),
                    kind: e.entry.kind.as_str().to_owned(),
                    collection_point: e.point.clone(),
                    insurance: e.insurance.clone(),
                    amount: yuan(e.fen),
                    journal_state: state,
                    tax_voucher_no: e.entry.tax_voucher_no.clone(),
                    note,
                });
            }
        }
    }
    for key in missing_sums.keys() {
        differing.insert(key.clone());
    }
    let mut surplus = Vec::new();
    if !truncated {
        for key in &differing {
            let j = journal.get(key).copied().unwrap_or_default();
            let l = ledger.get(key).copied().unwrap_or_default();
            let m = missing_sums.get(key).copied().unwrap_or_default();
            let diff = |ledger: u64, journal: u64, missing: u64| {
                i64::try_from(ledger).unwrap_or(i64::MAX) - i64::try_from(journal).unwrap_or(i64::MAX)
                    + i64::try_from(missing).unwrap_or(i64::MAX)
            };
            let payments = diff(l.payments, j.payments, m.payments);
            let payment_fen = l.payment_fen - j.payment_fen + m.payment_fen;
            let reversals = diff(l.reversals, j.reversals, m.reversals);
            let reversal_fen = l.reversal_fen - j.reversal_fen + m.reversal_fen;
            if payments != 0 || payment_fen != 0 || reversals != 0 || reversal_fen != 0 {
                surplus.push(Surplus {
                    collection_point: key.0.clone(),
                    insurance: key.1.clone(),
                    payments,
                    payment_total: yuan(payment_fen),
                    reversals,
                    reversal_total: yuan(reversal_fen),
                    note: "the ledger holds entries of this day that the journal does not have (or amounts that \
                           differ); its summary cannot name them"
                        .to_owned(),
                });
            }
        }
    }

    // Terminals against journal.
    let mut latest: BTreeMap<(String, String, String), &crate::journal::DaySettlement> = BTreeMap::new();
    for s in &settlements {
        if collection_point.is_some_and(|p| *p != s.collection_point) {
            continue;
        }
        let key = (
            s.collection_point.as_str().to_owned(),
            s.record.terminal.as_str().to_owned(),
            s.record.batch.as_str().to_owned(),
        );
        // Oldest first: a later settlement of the same batch replaces an earlier one.
        latest.insert(key, s);
    }
    let mut points: BTreeSet<String> = entries.iter().map(|e| e.point.clone()).collect();
    points.extend(latest.keys().map(|k| k.0.clone()));
    let mut terminals = Vec::new();
    for point in points {
        let mut settled = Vec::new();
        let mut batches = BTreeSet::new();
        let mut terminal_net = 0i64;
        for ((p, terminal, batch), s) in &latest {
            if *p != point {
                continue;
            }
            let t = s.record.terminal_totals;
            let net = t.sale_fen - t.void_fen - t.refund_fen;
            terminal_net += net;
            batches.insert((terminal.clone(), batch.clone()));
            if !s.record.balanced {
                differences.push(Difference {
                    what: "settlement_not_balanced",
                    collection_point: point.clone(),
                    insurance: None,
                    field: format!("{terminal}/{batch}"),
                    journal: yuan(
                        s.record.journal_totals.sale_fen
                            - s.record.journal_totals.void_fen
                            - s.record.journal_totals.refund_fen,
                    ),
                    other: yuan(net),
                });
            }
            settled.push(SettledBatch {
                terminal_id: terminal.clone(),
                batch: batch.clone(),
                at: s.record.at.clone(),
                balanced: s.record.balanced,
                sale_total: yuan(t.sale_fen),
                void_total: yuan(t.void_fen),
                refund_total: yuan(t.refund_fen),
                net: yuan(net),
            });
        }
        let mut journal_net = 0i64;
        let mut unsettled = Vec::new();
        for e in entries.iter().filter(|e| e.point == point) {
            journal_net += if e.reversal { -e.fen } else { e.fen };
            if !e.terminal_batch.as_ref().is_some_and(|tb| batches.contains(tb)) {
                unsettled.push(e.entry.entry_id.clone());
            }
        }
        let agrees = terminal_net == journal_net;
        if !agrees {
            differences.push(Difference {
                what: "terminals_vs_journal",
                collection_point: point.clone(),
                insurance: None,
                field: "net".to_owned(),
                journal: yuan(journal_net),
                other: yuan(terminal_net),
            });
        }
        terminals.push(PointSettlement {
            collection_point: point,
            settlements: settled,
            terminal_net: yuan(terminal_net),
            journal_net: yuan(journal_net),
            unsettled_entries: unsettled,
            agrees,
        });
    }

    let balanced = differences.is_empty() && missing.is_empty() && surplus.is_empty();
    Ok(Reconciliation {
        date: format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day()),
        collection_point: collection_point.map(|p| p.as_str().to_owned()),
        balanced,
        lines,
        terminals,
        differences,
        missing_at_ledger: missing,
        unknown_to_journal: surplus,
        lookups: Lookups { asked: asked.len(), limit: MAX_LOOKUPS, truncated },
    })
}

/// The first of the fields reconciliation counts by (kind, amount, insurance, collection point, day)
/// on which the ledger's entry differs from the journal's, with the ledger's value.
fn differing_field(mine: &serde_json::Value, theirs: &serde_json::Value) -> Option<(&'static str, String)> {
    let day = |v: &serde_json::Value| {
        v.get("occurred_at").and_then(|t| t.as_str()).map(|t| t.chars().take(10).collect::<String>())
    };
    for field in ["kind", "amount", "insurance", "collection_point"] {
        if mine.get(field) != theirs.get(field) {
            let shown = theirs.get(field).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
            return Some((field, shown));
        }
    }
    (day(mine) != day(theirs)).then(|| ("occurred_at", day(theirs).unwrap_or_default()))
}

/// Looks up entries at the ledger, a few at once: entry id to what the ledger holds under it, `None`
/// when it holds nothing.
async fn look_up(client: &LedgerClient, ids: Vec<String>) -> Result<HashMap<String, Option<HeldEntry>>, SendError> {
    let client = Arc::new(client.clone());
    let mut out = HashMap::with_capacity(ids.len());
    let mut pending = ids.into_iter();
    let mut tasks = JoinSet::new();
    loop {
        while tasks.len() < LOOKUP_CONCURRENCY {
            let Some(id) = pending.next() else { break };
            let client = Arc::clone(&client);
            tasks.spawn(async move {
                let held = client.entry(&id).await;
                (id, held)
            });
        }
        let Some(joined) = tasks.join_next().await else { break };
        let (id, held) = joined.map_err(|e| SendError::Connection { detail: format!("lookup task failed: {e}") })?;
        out.insert(id, held?);
    }
    Ok(out)
}
