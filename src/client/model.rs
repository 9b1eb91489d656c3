//! The API's JSON objects as the client reads them (docs/api.md, "Objects"). Amounts stay the yuan
//! strings the API wrote; only what the client decides on (states, `balanced`) is typed.

use serde::Deserialize;
use serde_json::Value;

/// A payment's state (architecture.md, "Payment states"); reversals use the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PaymentState {
    /// Recorded, not yet sent to the terminal.
    Created,
    /// Sent; no answer yet.
    Sent,
    /// The terminal approved it.
    Approved,
    /// The terminal declined it.
    Declined,
    /// The answer was lost; the daemon asks the terminal.
    Unknown,
    /// The terminal has no record of it: nothing was charged.
    NotCharged,
    /// Approved and forwarded to the tax ledger.
    Forwarded,
    /// Voided (撤销).
    Voided,
    /// Refunded (退货).
    Refunded,
}

impl PaymentState {
    /// The API's word for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentState::Created => "created",
            PaymentState::Sent => "sent",
            PaymentState::Approved => "approved",
            PaymentState::Declined => "declined",
            PaymentState::Unknown => "unknown",
            PaymentState::NotCharged => "not_charged",
            PaymentState::Forwarded => "forwarded",
            PaymentState::Voided => "voided",
            PaymentState::Refunded => "refunded",
        }
    }

    /// False while the outcome is open (`created`, `sent`, `unknown`).
    pub const fn is_final(self) -> bool {
        !matches!(self, PaymentState::Created | PaymentState::Sent | PaymentState::Unknown)
    }
}

/// PAYMENT.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Payment {
    pub(crate) id: String,
    pub(crate) state: PaymentState,
    pub(crate) line: LineRef,
    pub(crate) amount: String,
    pub(crate) terminal: String,
    pub(crate) created_at: String,
    #[serde(default)]
    pub(crate) pos: Option<Pos>,
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) slip: Option<Slip>,
    #[serde(default)]
    pub(crate) reversals: Vec<Reversal>,
    #[serde(default)]
    pub(crate) history: Vec<HistoryEntry>,
}

/// The line a payment is for.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LineRef {
    pub(crate) serial: String,
    pub(crate) insurance: String,
    pub(crate) year: u16,
}

/// What the terminal said last; every field may be null.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Pos {
    /// 应答码, the response code.
    #[serde(default)]
    pub(crate) code: Option<String>,
}

/// 签购单 data of an approved payment.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Slip {
    pub(crate) payer_name: String,
    /// Masked by the API (first 6, last 4).
    pub(crate) payer_id: String,
    pub(crate) insurance: String,
    pub(crate) year: u16,
    pub(crate) serial: String,
    pub(crate) amount: String,
    #[serde(default)]
    pub(crate) card: Option<String>,
    #[serde(default)]
    pub(crate) terminal_id: Option<String>,
    /// 批次号.
    #[serde(default)]
    pub(crate) batch: Option<String>,
    /// 凭证号, POS trace number.
    #[serde(default)]
    pub(crate) trace: Option<String>,
    /// 参考号, retrieval reference number.
    #[serde(default)]
    pub(crate) rrn: Option<String>,
    /// 授权码.
    #[serde(default)]
    pub(crate) auth: Option<String>,
}

/// One step of a payment's history.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct HistoryEntry {
    pub(crate) at: String,
    #[serde(default)]
    pub(crate) from: Option<String>,
    pub(crate) to: String,
    #[serde(default)]
    pub(crate) code: Option<String>,
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) note: Option<String>,
}

/// REVERSAL: a void or a refund of a payment.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Reversal {
    pub(crate) id: String,
    pub(crate) kind: ReversalKind,
    pub(crate) state: PaymentState,
    pub(crate) amount: String,
    pub(crate) message: String,
}

/// Void (撤销) or refund (退货).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReversalKind {
    Void,
    Refund,
}

impl ReversalKind {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            ReversalKind::Void => "void",
            ReversalKind::Refund => "refund",
        }
    }
}

/// The answer of void and refund.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ReversalAnswer {
    pub(crate) payment: Payment,
    pub(crate) reversal: Reversal,
}

/// LINE: a roster line.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Line {
    pub(crate) serial: String,
    pub(crate) insurance: String,
    pub(crate) year: u16,
    pub(crate) name: String,
    /// Masked by the API.
    pub(crate) id_number: String,
    /// Null for a pension line: the payer picks a tier.
    #[serde(default)]
    pub(crate) amount_due: Option<String>,
    pub(crate) hardship: String,
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) paid_by: Option<Value>,
}

/// The answer of lookup.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Lookup {
    pub(crate) lines: Vec<Line>,
    #[serde(default)]
    pub(crate) elsewhere: u64,
}

/// The answer of the payment listing.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Payments {
    pub(crate) payments: Vec<Payment>,
}

/// TERMINAL.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Terminal {
    pub(crate) name: String,
    pub(crate) collection_point: String,
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) terminal_id: Option<String>,
    #[serde(default)]
    pub(crate) batch: Option<String>,
    #[serde(default)]
    pub(crate) last_error: Option<String>,
    pub(crate) queued: u64,
    pub(crate) unknown: u64,
}

/// The answer of the terminal listing.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Terminals {
    pub(crate) terminals: Vec<Terminal>,
}

/// SETTLEMENT.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Settlement {
    pub(crate) id: u64,
    pub(crate) terminal: String,
    #[serde(default)]
    pub(crate) terminal_id: Option<String>,
    #[serde(default)]
    pub(crate) batch: Option<String>,
    pub(crate) balanced: bool,
    pub(crate) terminal_totals: Totals,
    pub(crate) journal_totals: Totals,
    #[serde(default)]
    pub(crate) differences: Vec<Difference>,
    pub(crate) at: String,
}

/// A batch's totals, on one side of a settlement.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Totals {
    pub(crate) sale_count: u64,
    pub(crate) sale_total: String,
    pub(crate) void_count: u64,
    pub(crate) void_total: String,
    pub(crate) refund_count: u64,
    pub(crate) refund_total: String,
}

impl Totals {
    /// The totals as (name, value) pairs, in the API's order.
    pub(crate) fn rows(&self) -> [(&'static str, String); 6] {
        [
            ("sale_count", self.sale_count.to_string()),
            ("sale_total", self.sale_total.clone()),
            ("void_count", self.void_count.to_string()),
            ("void_total", self.void_total.clone()),
            ("refund_count", self.refund_count.to_string()),
            ("refund_total", self.refund_total.clone()),
        ]
    }
}

/// One total where the terminal and the journal differ.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Difference {
    pub(crate) what: String,
    pub(crate) terminal: Value,
    pub(crate) journal: Value,
}

/// Every error answer: a stable `code`, a message for people, and sometimes more fields (`rule`,
/// `field`, `what`, `reason`, `problems`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) code: String,
    pub(crate) message: String,
    #[serde(flatten)]
    pub(crate) extra: serde_json::Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_payment_parses() {
        let body = r#"{
          "id": "P20201021091502-3FA2C1", "state": "approved", "final": true,
          "line": {"serial": "ZJ-000123", "insurance": "medical", "year": 2020},
          "amount": "280.00", "terminal": "T01", "terminal_id": "41000001", "till": "01", "operator": "1001",
          "created_at": "2020-10-21T09:15:02.123456+08:00", "updated_at": "2020-10-21T09:15:04.004512+08:00",
          "pos": {"code": "00", "text": "交易成功", "card": "622848******1234", "amount": "280.00",
                  "trace": "000123", "batch": "000001", "rrn": "100100000001", "auth": "A1B2C3"},
          "message": "approved: 280.00 yuan for 2020 medical ZJ-000123",
          "slip": {"payer_name": "张三", "payer_id": "410402********1234", "insurance": "medical", "year": 2020,
                   "serial": "ZJ-000123", "amount": "280.00", "card": "622848******1234", "merchant_id": "898410153990001",
                   "terminal_id": "41000001", "batch": "000001", "trace": "000123", "rrn": "100100000001",
                   "auth": "A1B2C3", "collection_point": "WD-DX-001", "operator": "1001"},
          "reversals": [],
          "history": [{"at": "...", "from": null, "to": "created", "code": null, "text": null, "note": null}]
        }"#;
        let p: Payment = serde_json::from_str(body).unwrap();
        assert_eq!(p.state, PaymentState::Approved);
        assert!(p.state.is_final());
        assert_eq!(p.slip.unwrap().auth.as_deref(), Some("A1B2C3"));
    }

    #[test]
    fn an_undocumented_state_is_refused() {
        let r: Result<PaymentState, _> = serde_json::from_str(r#""failed""#);
        assert!(r.is_err());
    }

    #[test]
    fn an_error_keeps_its_extra_fields() {
        let e: ErrorBody =
            serde_json::from_str(r#"{"code": "policy", "rule": "pension_tier", "message": "tier 450.00"}"#).unwrap();
        assert_eq!(e.code, "policy");
        assert_eq!(e.extra.get("rule"), Some(&Value::from("pension_tier")));
    }
}
