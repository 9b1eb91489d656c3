//! What the collection service answers when it will not or cannot do what was asked.

use crate::journal::{ReadError, StorageError};
use crate::policy::PolicyViolation;

/// Which policy rule refused a collection (the API's `rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The business day is outside the window, or in a phase that takes no payments.
    Window,
    /// The amount is not one of the pension tiers.
    PensionTier,
    /// The amount is not the medical line's amount due.
    MedicalAmount,
    /// The payer's age (pension).
    PensionAge,
    /// The line, or another line of the same person, insurance and year, is paid or being paid.
    AlreadyPaid,
    /// The line or the terminal belongs to another collection point.
    CollectionPoint,
    /// The line is for another year than the policy's.
    Year,
}

impl Rule {
    /// The API's spelling.
    pub const fn code(self) -> &'static str {
        match self {
            Rule::Window => "window",
            Rule::PensionTier => "pension_tier",
            Rule::MedicalAmount => "medical_amount",
            Rule::PensionAge => "pension_age",
            Rule::AlreadyPaid => "already_paid",
            Rule::CollectionPoint => "collection_point",
            Rule::Year => "year",
        }
    }

    /// The rule a policy violation breaks.
    pub fn of(v: &PolicyViolation) -> Rule {
        match v {
            PolicyViolation::TooYoung { .. } | PolicyViolation::BornTooEarly { .. } => Rule::PensionAge,
            PolicyViolation::NotATier { .. } => Rule::PensionTier,
            _ => Rule::Window,
        }
    }
}

/// Why the service refused or failed a request. Each variant maps to one HTTP status and `code` of
/// docs/api.md.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A request field is missing or malformed (400 `bad_request`).
    #[error("{field}: {message}")]
    BadRequest {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Outside the caller's collection point, or an admin-only action (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// No such line, payment or terminal (404 `not_found`).
    #[error("{message}")]
    NotFound {
        /// `line`, `payment` or `terminal`.
        what: &'static str,
        /// In words.
        message: String,
    },
    /// The state does not allow it (409 `conflict`).
    #[error("{message}")]
    Conflict {
        /// A stable reason, e.g. `payment_under_way`, `not_reversible`, `outcome_unknown`.
        reason: &'static str,
        /// In words.
        message: String,
    },
    /// The policy refuses the collection (422 `policy`).
    #[error("{message}")]
    Policy {
        /// The rule.
        rule: Rule,
        /// In words, with the values.
        message: String,
    },
    /// The terminal cannot take the request now; nothing was sent (503 `terminal_unavailable`).
    #[error("{0}")]
    TerminalUnavailable(String),
    /// The journal failed (500 `internal`).
    #[error("journal: {0}")]
    Journal(String),
}

impl ServiceError {
    /// A 409 with a reason.
    pub fn conflict(reason: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::Conflict { reason, message: message.into() }
    }

    /// A 422 for a rule.
    pub fn policy(rule: Rule, message: impl Into<String>) -> ServiceError {
        ServiceError::Policy { rule, message: message.into() }
    }

    /// A 404.
    pub fn not_found(what: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::NotFound { what, message: message.into() }
    }

    /// A 400 naming the field.
    pub fn bad(field: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::BadRequest { field, message: message.into() }
    }
}

impl From<ReadError> for ServiceError {
    fn from(e: ReadError) -> Self {
        ServiceError::Journal(e.to_string())
    }
}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        ServiceError::Journal(e.to_string())
    }
}
