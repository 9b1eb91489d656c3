//! Reading the ledger's answer to `POST /v1/entries` against the contract (ledger-api.md): one result
//! per entry sent, in the same order, each with a known status. Anything else is a [`ContractError`]
//! for the whole batch: nothing of it is recorded, and the batch is retried.

use serde_json::{Map, Value};

use crate::journal::{LedgerAnswer, LedgerVerdict};

/// Longest text of the ledger's quoted in an error (a reason, an unknown status).
const QUOTE_CHARS: usize = 120;

/// Why an answer with status 200 is not the contract's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// The body is not JSON.
    #[error("the answer is not JSON: {0}")]
    NotJson(String),
    /// The body is not an object with a `results` array.
    #[error("the answer is not {{\"results\": [...]}}")]
    NoResults,
    /// `results` has another length than the entries sent.
    #[error("{got} results for {sent} entries sent")]
    WrongCount {
        /// Entries sent.
        sent: usize,
        /// Results received.
        got: usize,
    },
    /// A result is not an object.
    #[error("results[{index}] is not an object")]
    NotAnObject {
        /// Its position.
        index: usize,
    },
    /// A result names another entry than the one sent at its position (out of order, or unknown).
    #[error("results[{index}] is for entry {got:?}, but entry {sent:?} was sent there")]
    OutOfOrder {
        /// Its position.
        index: usize,
        /// The id sent at that position.
        sent: String,
        /// The id in the result.
        got: String,
    },
    /// A result's status is not `created`, `exists` or `rejected`.
    #[error("results[{index}] has an unknown status {status:?}")]
    UnknownStatus {
        /// Its position.
        index: usize,
        /// The status given.
        status: String,
    },
    /// A field of a result is absent or of the wrong type (`entry_id`, `status`, `tax_voucher_no` of a
    /// `created` or `exists`, a `reason` that is not a string or null).
    #[error("results[{index}].{field} is missing or malformed")]
    BadField {
        /// Its position.
        index: usize,
        /// The field.
        field: &'static str,
    },
}

/// Reads an answer to the entries `sent` (their ids, in the order sent).
pub fn parse_batch_answer(sent: &[&str], body: &[u8]) -> Result<Vec<LedgerAnswer>, ContractError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ContractError::NotJson(e.to_string()))?;
    let results = value.get("results").and_then(Value::as_array).ok_or(ContractError::NoResults)?;
    if results.len() != sent.len() {
        return Err(ContractError::WrongCount { sent: sent.len(), got: results.len() });
    }
    results.iter().zip(sent).enumerate().map(|(index, (result, sent))| read_result(index, sent, result)).collect()
}

fn read_result(index: usize, sent: &str, result: &Value) -> Result<LedgerAnswer, ContractError> {
    let obj: &Map<String, Value> = result.as_object().ok_or(ContractError::NotAnObject { index })?;
    let text = |field: &'static str| -> Result<Option<&str>, ContractError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ContractError::BadField { index, field }),
        }
    };
    let entry_id = text("entry_id")?.ok_or(ContractError::BadField { index, field: "entry_id" })?;
    if entry_id != sent {
        return Err(ContractError::OutOfOrder { index, sent: sent.to_owned(), got: quote(entry_id) });
    }
    let status = text("status")?.ok_or(ContractError::BadField { index, field: "status" })?;
    let voucher = text("tax_voucher_no")?;
    let reason = text("reason")?;
    let verdict = match status {
        "created" | "exists" => {
            let voucher = voucher
                .filter(|v| !v.trim().is_empty() && v.len() <= 64)
                .ok_or(ContractError::BadField { index, field: "tax_voucher_no" })?;
            LedgerVerdict::Holds { tax_voucher_no: voucher.to_owned() }
        }
        "rejected" => LedgerVerdict::Rejected {
            reason: reason.map(quote).unwrap_or_else(|| "rejected (the ledger gave no reason)".to_owned()),
        },
        other => return Err(ContractError::UnknownStatus { index, status: quote(other) }),
    };
    Ok(LedgerAnswer { entry_id: entry_id.to_owned(), verdict })
}

/// At most [`QUOTE_CHARS`] characters of a text from the ledger, control characters blanked.
fn quote(text: &str) -> String {
    let quoted: String = text.chars().take(QUOTE_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    crate::logging::redact(&quoted).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: [&str; 2] = ["P1", "P1-reversal"];

    fn parse(body: &str) -> Result<Vec<LedgerAnswer>, ContractError> {
        parse_batch_answer(&SENT, body.as_bytes())
    }

    #[test]
    fn reads_the_contracts_answer() {
        let body = r#"{"results": [
            {"entry_id": "P1", "status": "exists", "tax_voucher_no": "30000000000000000001", "reason": null},
            {"entry_id": "P1-reversal", "status": "rejected", "tax_voucher_no": null, "reason": "reversal_exceeds_payment"}
        ]}"#;
        let answers = parse(body).unwrap();
        assert_eq!(answers[0].verdict, LedgerVerdict::Holds { tax_voucher_no: "30000000000000000001".into() });
        assert_eq!(answers[1].verdict, LedgerVerdict::Rejected { reason: "reversal_exceeds_payment".into() });
    }

    #[test]
    fn refuses_what_breaks_the_contract() {
        let ok = r#"{"entry_id": "P1", "status": "created", "tax_voucher_no": "3"}"#;
        let rev = r#"{"entry_id": "P1-reversal", "status": "created", "tax_voucher_no": "4"}"#;
        assert!(matches!(parse("not json"), Err(ContractError::NotJson(_))));
        assert_eq!(parse(r#"{"result": []}"#), Err(ContractError::NoResults));
        assert_eq!(parse(r#"[]"#), Err(ContractError::NoResults));
        assert_eq!(parse(&format!(r#"{{"results": [{ok}]}}"#)), Err(ContractError::WrongCount { sent: 2, got: 1 }));
        assert_eq!(
            parse(&format!(r#"{{"results": [{rev}, {ok}]}}"#)),
            Err(ContractError::OutOfOrder { index: 0, sent: "P1".into(), got: "P1-reversal".into() })
        );
        let unknown = r#"{"entry_id": "P1-reversal", "status": "queued", "tax_voucher_no": null}"#;
        assert_eq!(
            parse(&format!(r#"{{"results": [{ok}, {unknown}]}}"#)),
            Err(ContractError::UnknownStatus { index: 1, status: "queued".into() })
        );
        let no_voucher = r#"{"entry_id": "P1-reversal", "status": "created", "tax_voucher_no": null}"#;
        assert_eq!(
            parse(&format!(r#"{{"results": [{ok}, {no_voucher}]}}"#)),
            Err(ContractError::BadField { index: 1, field: "tax_voucher_no" })
        );
        assert_eq!(parse(&format!(r#"{{"results": [{ok}, 7]}}"#)), Err(ContractError::NotAnObject { index: 1 }));
        let numeric = r#"{"entry_id": "P1-reversal", "status": "created", "tax_voucher_no": 4}"#;
        assert_eq!(
            parse(&format!(r#"{{"results": [{ok}, {numeric}]}}"#)),
            Err(ContractError::BadField { index: 1, field: "tax_voucher_no" })
        );
    }
}
