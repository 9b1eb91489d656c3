//! What the terminal keeps across restarts ("memory like flash").
//!
//! [`TerminalState`] holds the counters a real terminal keeps in flash (current batch, last trace, the
//! RRN counter) and its transaction log: every transaction of the current and the previous batch, plus
//! the last [`RETAINED_TRANSACTIONS`] overall (wire-protocol.md §5.3, QUERY). The sign-in flag is held
//! here too but is not written to the file: a restarted terminal must sign in again.
//!
//! The file is JSON (`version` 1). [`TerminalState::save`] writes it atomically (a temporary file in the
//! same directory, fsync, rename, fsync of the directory); [`TerminalState::load`] checks every field, so
//! a damaged file is an error naming the file and the problem, never a half-loaded state.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use zhengjiao_protocol::memo::{EcrReference, QueryState, SettleTotals};
use zhengjiao_protocol::message::{
    Amount, AuthCode, Batch, Date, MaskedPan, MessageType, ResponseCode, ResponseText, Rrn, Time, Trace,
};
use zhengjiao_protocol::{Ascii, Digits, Text};

/// The state file's format version.
pub const STATE_VERSION: u32 = 1;
/// How many transactions the terminal keeps at least, across batches; older ones outside the current
/// and the previous batch are dropped (§5.3: "SHOULD for its last 1000 transactions").
pub const RETAINED_TRANSACTIONS: usize = 1000;
/// The most transactions one batch may hold; a full batch refuses money requests until SETTLE (real
/// terminals do the same: "交易笔数已满，请先结算"). Bounds the log at two batches plus the retained tail.
pub const MAX_BATCH_TRANSACTIONS: usize = 50_000;
/// The largest state file [`TerminalState::load`] reads.
pub const MAX_STATE_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// The highest batch and trace number (six digits); the next one is 000001.
pub const MAX_COUNTER: u32 = 999_999;

/// One transaction as the terminal stored it: what it answered, and for a sale, what happened to it later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TransactionFile", into = "TransactionFile")]
pub struct Transaction {
    /// 0F01, the ECR reference it is stored under.
    pub reference: EcrReference,
    /// SALE, VOID or REFUND.
    pub kind: MessageType,
    /// 应答码 it was answered with.
    pub code: ResponseCode,
    /// 应答信息 it was answered with.
    pub text: ResponseText,
    /// 卡号, masked (the only form that ever exists here).
    pub card: Option<MaskedPan>,
    /// 金额 in fen.
    pub amount: Amount,
    /// 凭证号; zero for a refusal that never reached the host.
    pub trace: Trace,
    /// 批次号, the batch it was stored in.
    pub batch: Batch,
    /// Local date (UTC+8).
    pub date: Date,
    /// Local time (UTC+8).
    pub time: Time,
    /// 参考号; empty when none was assigned.
    pub rrn: Rrn,
    /// 授权码; empty unless approved.
    pub auth: AuthCode,
    /// SALE only: voided later.
    pub voided: bool,
    /// SALE only: the amount refunded so far.
    pub refunded: Amount,
    /// VOID and REFUND: the reference of the sale they act on, when it was found.
    pub original: Option<EcrReference>,
}

impl Transaction {
    /// True when it was approved (`00`).
    pub fn is_approved(&self) -> bool {
        self.code.is_approved()
    }

    /// 0F05 as QUERY reports it: declined, voided, fully refunded, or approved and standing.
    pub fn query_state(&self) -> QueryState {
        if !self.is_approved() {
            QueryState::Declined
        } else if self.voided {
            QueryState::Voided
        } else if self.kind == MessageType::Sale && self.refunded >= self.amount {
            QueryState::Refunded
        } else {
            QueryState::Approved
        }
    }

    /// SALE only: what can still be refunded, in fen.
    pub fn refundable(&self) -> u64 {
        self.amount.fen().saturating_sub(self.refunded.fen())
    }
}

/// The file form of a [`Transaction`]: plain strings, checked on the way in.
#[derive(Serialize, Deserialize)]
struct TransactionFile {
    reference: String,
    kind: String,
    code: String,
    text: String,
    card: Option<String>,
    amount_fen: u64,
    trace: String,
    batch: String,
    date: String,
    time: String,
    rrn: String,
    auth: String,
    #[serde(default)]
    voided: bool,
    #[serde(default)]
    refunded_fen: u64,
    #[serde(default)]
    original: Option<String>,
}

impl From<Transaction> for TransactionFile {
    fn from(t: Transaction) -> Self {
        TransactionFile {
            reference: t.reference.as_str().to_owned(),
            kind: t.kind.code().to_owned(),
            code: t.code.as_str().to_owned(),
            text: t.text.as_str().to_owned(),
            card: t.card.map(|c| c.as_str().to_owned()),
            amount_fen: t.amount.fen(),
            trace: t.trace.as_str().to_owned(),
            batch: t.batch.as_str().to_owned(),
            date: t.date.as_str().to_owned(),
            time: t.time.as_str().to_owned(),
            rrn: t.rrn.as_str().to_owned(),
            auth: t.auth.as_str().to_owned(),
            voided: t.voided,
            refunded_fen: t.refunded.fen(),
            original: t.original.map(|r| r.as_str().to_owned()),
        }
    }
}

impl TryFrom<TransactionFile> for Transaction {
    type Error = String;

    fn try_from(f: TransactionFile) -> Result<Self, String> {
        fn field<T, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> Result<T, String> {
            r.map_err(|e| format!("transaction field {name}: {e}"))
        }
        let reference: EcrReference = field("reference", Ascii::new(&f.reference))?;
        if reference.is_empty() {
            return Err("transaction field reference: empty".into());
        }
        let kind = match MessageType::from_code(f.kind.as_bytes()) {
            Some(k @ (MessageType::Sale | MessageType::Void | MessageType::Refund)) => k,
            _ => return Err(format!("transaction field kind: {:?} is not 00, 01 or 02", f.kind)),
        };
        let amount = field("amount_fen", Amount::from_fen(f.amount_fen))?;
        let refunded = field("refunded_fen", Amount::from_fen(f.refunded_fen))?;
        if refunded > amount {
            return Err(format!("transaction {reference}: refunded {refunded} exceeds the amount {amount}"));
        }
        Ok(Transaction {
            reference,
            kind,
            code: field("code", ResponseCode::new(&f.code))?,
            text: field("text", Text::new(&f.text))?,
            card: f
                .card
                .as_deref()
                .map(MaskedPan::new)
                .transpose()
                .map_err(|e| format!("transaction field card: {e}"))?,
            amount,
            trace: field("trace", digits(&f.trace))?,
            batch: field("batch", digits(&f.batch))?,
            date: field("date", digits(&f.date))?,
            time: field("time", digits(&f.time))?,
            rrn: field("rrn", Ascii::new(&f.rrn))?,
            auth: field("auth", Ascii::new(&f.auth))?,
            voided: f.voided,
            refunded,
            original: f.original.as_deref().map(Ascii::new).transpose().map_err(|e| format!("original: {e}"))?,
        })
    }
}

/// Exactly `N` digits, as stored (no zero-padding of shorter values: the file always holds full widths).
fn digits<const N: usize>(s: &str) -> Result<Digits<N>, String> {
    if s.len() != N {
        return Err(format!("{s:?} is not {N} digits"));
    }
    Digits::new(s).map_err(|e| e.to_string())
}

/// Where a transaction sits in the log: a sequence number that stays valid while older entries drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(u64);

/// Lookups over the log, rebuilt on load (not part of the file).
#[derive(Debug, Clone, Default)]
struct Index {
    /// Latest transaction stored under each reference.
    by_reference: HashMap<EcrReference, u64>,
    /// Transactions with an RRN (RRNs are unique per terminal).
    by_rrn: HashMap<Rrn, u64>,
    /// Current batch only: transactions with a trace.
    by_trace: HashMap<Trace, u64>,
}

/// Everything the terminal's flash keeps: current batch, trace and RRN counters, and the transaction log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "StateFile")]
pub struct TerminalState {
    version: u32,
    /// 1..=999999.
    batch: u32,
    previous_batch: Option<u32>,
    /// 0..=999999; 0 before the first trace.
    last_trace: u32,
    /// RRNs issued so far; the next RRN uses this plus one.
    last_rrn: u64,
    /// Oldest first; the current batch is a contiguous tail.
    transactions: VecDeque<Transaction>,
    /// Sequence number of `transactions[0]`.
    #[serde(skip_serializing)]
    first_seq: u64,
    /// Transactions of the current batch (the tail's length).
    #[serde(skip_serializing)]
    current_len: usize,
    /// Transactions of the previous batch (the run before the tail).
    #[serde(skip_serializing)]
    previous_len: usize,
    #[serde(skip_serializing)]
    signed_in: bool,
    #[serde(skip_serializing)]
    index: Index,
}

/// The file form of a [`TerminalState`].
#[derive(Deserialize)]
struct StateFile {
    version: u32,
    batch: u32,
    previous_batch: Option<u32>,
    last_trace: u32,
    last_rrn: u64,
    transactions: VecDeque<Transaction>,
}

impl TryFrom<StateFile> for TerminalState {
    type Error = String;

    fn try_from(f: StateFile) -> Result<Self, String> {
        if f.version != STATE_VERSION {
            return Err(format!("version {} is not the supported {STATE_VERSION}", f.version));
        }
        let counter = |name: &str, n: u32, min: u32| {
            if (min..=MAX_COUNTER).contains(&n) {
                Ok(n)
            } else {
                Err(format!("{name} {n} is outside {min}..={MAX_COUNTER}"))
            }
        };
        let mut state = TerminalState {
            version: STATE_VERSION,
            batch: counter("batch", f.batch, 1)?,
            previous_batch: f.previous_batch.map(|b| counter("previous_batch", b, 1)).transpose()?,
            last_trace: counter("last_trace", f.last_trace, 0)?,
            last_rrn: f.last_rrn,
            transactions: f.transactions,
            first_seq: 0,
            current_len: 0,
            previous_len: 0,
            signed_in: false,
            index: Index::default(),
        };
        state.rebuild_index();
        Ok(state)
    }
}

impl Default for TerminalState {
    fn default() -> Self {
        TerminalState::new()
    }
}

/// A state file that could not be read or written; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The file exists but could not be read.
    #[error("reading terminal state file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a valid terminal state (damaged, truncated, another format, or too large).
    #[error("terminal state file {path} is corrupt: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and column where the JSON parser can tell.
        problem: String,
    },
    /// The state could not be written; the previous file, if any, is unchanged.
    #[error("writing terminal state file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Makes temporary file names unique within the process (several terminals may save at once).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TerminalState {
    /// A fresh terminal: batch 000001, no transactions, not signed in.
    pub fn new() -> Self {
        TerminalState {
            version: STATE_VERSION,
            batch: 1,
            previous_batch: None,
            last_trace: 0,
            last_rrn: 0,
            transactions: VecDeque::new(),
            first_seq: 0,
            current_len: 0,
            previous_len: 0,
            signed_in: false,
            index: Index::default(),
        }
    }

    /// Reads the state file; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, StateError> {
        let read_err = |source| StateError::Read { path: path.to_owned(), source };
        let corrupt = |problem: String| StateError::Corrupt { path: path.to_owned(), problem };
        let file = match fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        let len = file.metadata().map_err(read_err)?.len();
        if len > MAX_STATE_FILE_BYTES {
            return Err(corrupt(format!("{len} bytes, above the limit of {MAX_STATE_FILE_BYTES}")));
        }
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(file, MAX_STATE_FILE_BYTES + 1), &mut bytes).map_err(read_err)?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| corrupt(e.to_string()))
    }

    /// Writes the state file atomically: a temporary file in the same directory, fsync, rename over
    /// `path`, fsync of the directory. On error the previous file is left as it was.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let bytes = self.encode().map_err(|e| StateError::Write { path: path.to_owned(), source: e })?;
        Self::write_encoded(path, &bytes)
    }

    /// The file's content for this state: the first half of [`save`](Self::save), for a caller that
    /// must not hold its lock over the disk write.
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(io::Error::other)
    }

    /// Writes what [`encode`](Self::encode) returned, as [`save`](Self::save) does.
    pub fn write_encoded(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
        let write_err = |source| StateError::Write { path: path.to_owned(), source };
        let name = path
            .file_name()
            .ok_or_else(|| write_err(io::Error::new(io::ErrorKind::InvalidInput, "the path names no file")))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{}.{}.{n}.tmp", name.to_string_lossy(), std::process::id()));
        let result = (|| {
            let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, path)?;
            sync_dir(dir)
        })();
        if result.is_err() {
            // Best effort: the temporary file is garbage either way.
            let _ = fs::remove_file(&temp);
        }
        result.map_err(write_err)
    }

    /// 批次号, the open batch.
    pub fn batch(&self) -> Batch {
        counter_digits(self.batch)
    }

    /// The batch closed by the last SETTLE, if any since this state was created.
    pub fn previous_batch(&self) -> Option<Batch> {
        self.previous_batch.map(counter_digits)
    }

    /// The last trace issued (000000 before the first).
    pub fn last_trace(&self) -> Trace {
        counter_digits(self.last_trace)
    }

    /// How many RRNs this terminal has issued.
    pub fn rrns_issued(&self) -> u64 {
        self.last_rrn
    }

    /// True once SIGN_IN succeeded since the engine started (never read from the file).
    pub fn is_signed_in(&self) -> bool {
        self.signed_in
    }

    /// The transaction log, oldest first.
    pub fn transactions(&self) -> impl Iterator<Item = &Transaction> + '_ {
        self.transactions.iter()
    }

    /// How many transactions the log holds.
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    /// True when the log is empty.
    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// How many transactions the open batch holds.
    pub fn current_batch_len(&self) -> usize {
        self.current_len
    }

    /// The transaction stored under `reference` (the latest, if a declined one was retried).
    pub fn find(&self, reference: &EcrReference) -> Option<&Transaction> {
        self.index.by_reference.get(reference).and_then(|&seq| self.get(Slot(seq)))
    }

    pub(crate) fn set_signed_in(&mut self, signed_in: bool) {
        self.signed_in = signed_in;
    }

    /// Issues the next trace: per terminal, 000001..=999999, then 000001 again.
    pub(crate) fn next_trace(&mut self) -> Trace {
        self.last_trace = self.last_trace % MAX_COUNTER + 1;
        counter_digits(self.last_trace)
    }

    /// Issues the next RRN number (1, 2, ...).
    pub(crate) fn next_rrn(&mut self) -> u64 {
        self.last_rrn = self.last_rrn.wrapping_add(1);
        self.last_rrn
    }

    /// True when the open batch can take no more transactions.
    pub(crate) fn batch_full(&self) -> bool {
        self.current_len >= MAX_BATCH_TRANSACTIONS
    }

    pub(crate) fn get(&self, slot: Slot) -> Option<&Transaction> {
        let i = usize::try_from(slot.0.checked_sub(self.first_seq)?).ok()?;
        self.transactions.get(i)
    }

    pub(crate) fn get_mut(&mut self, slot: Slot) -> Option<&mut Transaction> {
        let i = usize::try_from(slot.0.checked_sub(self.first_seq)?).ok()?;
        self.transactions.get_mut(i)
    }

    /// The transaction of the open batch with `trace`.
    pub(crate) fn slot_by_trace(&self, trace: Trace) -> Option<Slot> {
        self.index.by_trace.get(&trace).map(|&s| Slot(s))
    }

    /// The transaction with `rrn`.
    pub(crate) fn slot_by_rrn(&self, rrn: &Rrn) -> Option<Slot> {
        self.index.by_rrn.get(rrn).map(|&s| Slot(s))
    }

    /// Stores a transaction of the open batch, then drops what retention allows.
    pub(crate) fn push(&mut self, transaction: Transaction) {
        let seq = self.first_seq + self.transactions.len() as u64;
        self.index_one(&transaction, seq, true);
        self.transactions.push_back(transaction);
        self.current_len += 1;
        self.trim();
    }

    /// Closes the open batch: its gross totals (§5.3 SETTLE) and its number; batch+1 opens.
    pub(crate) fn settle(&mut self) -> (Batch, SettleTotals) {
        let mut totals = SettleTotals::default();
        for t in self.transactions.iter().rev().take(self.current_len).filter(|t| t.is_approved()) {
            let (count, total) = match t.kind {
                MessageType::Sale => (&mut totals.sale_count, &mut totals.sale_total),
                MessageType::Void => (&mut totals.void_count, &mut totals.void_total),
                _ => (&mut totals.refund_count, &mut totals.refund_total),
            };
            *count = count.saturating_add(1);
            *total = total.saturating_add(t.amount.fen());
        }
        let closed = self.batch;
        self.previous_batch = Some(closed);
        self.batch = closed % MAX_COUNTER + 1;
        self.previous_len = self.current_len;
        self.current_len = 0;
        self.index.by_trace.clear();
        self.trim();
        (counter_digits(closed), totals)
    }

    /// Drops the oldest transactions beyond [`RETAINED_TRANSACTIONS`] that belong to neither the current
    /// nor the previous batch.
    fn trim(&mut self) {
        let keep = self.current_len + self.previous_len;
        while self.transactions.len() > RETAINED_TRANSACTIONS.max(keep) {
            let Some(old) = self.transactions.pop_front() else { break };
            let seq = self.first_seq;
            self.first_seq += 1;
            if self.index.by_reference.get(&old.reference) == Some(&seq) {
                self.index.by_reference.remove(&old.reference);
            }
            if self.index.by_rrn.get(&old.rrn) == Some(&seq) {
                self.index.by_rrn.remove(&old.rrn);
            }
        }
    }

    fn index_one(&mut self, t: &Transaction, seq: u64, current: bool) {
        self.index.by_reference.insert(t.reference, seq);
        if !t.rrn.is_empty() {
            self.index.by_rrn.insert(t.rrn, seq);
        }
        if current && !t.trace.is_zero() {
            self.index.by_trace.insert(t.trace, seq);
        }
    }

    fn rebuild_index(&mut self) {
        self.index = Index::default();
        let batch = counter_digits(self.batch);
        self.current_len = self.transactions.iter().rev().take_while(|t| t.batch == batch).count();
        self.previous_len = self.previous_batch.map_or(0, |previous| {
            let previous = counter_digits(previous);
            self.transactions.iter().rev().skip(self.current_len).take_while(|t| t.batch == previous).count()
        });
        let start = self.transactions.len() - self.current_len;
        let all = std::mem::take(&mut self.transactions);
        for (i, t) in all.iter().enumerate() {
            self.index_one(t, i as u64, i >= start);
        }
        self.transactions = all;
        self.first_seq = 0;
        self.trim();
    }
}

fn counter_digits(n: u32) -> Digits<6> {
    Digits::from_number(u64::from(n)).unwrap_or(Digits::ZERO)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_and_batch_wrap_to_one() {
        let mut state = TerminalState { last_trace: MAX_COUNTER - 1, batch: MAX_COUNTER, ..TerminalState::new() };
        assert_eq!(state.next_trace().as_str(), "999999");
        assert_eq!(state.next_trace().as_str(), "000001");
        let (closed, totals) = state.settle();
        assert_eq!((closed.as_str(), totals), ("999999", SettleTotals::default()));
        assert_eq!(
            (state.batch().as_str(), state.previous_batch().map(|b| b.to_string())),
            ("000001", Some("999999".into()))
        );
    }

    #[test]
    fn a_digits_field_must_have_its_full_width() {
        assert!(digits::<6>("000001").is_ok());
        assert!(digits::<6>("1").is_err());
        assert!(digits::<6>("00000a").is_err());
    }

    #[test]
    fn save_refuses_a_path_without_a_file_name() {
        let err = TerminalState::new().save(Path::new("/"));
        assert!(matches!(err, Err(StateError::Write { .. })), "{err:?}");
    }
}
