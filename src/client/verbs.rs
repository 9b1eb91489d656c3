//! Each verb: its request, the polling of an open outcome, its output and its exit status.

use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::args::{ClientCommand, CollectArgs, PaymentsArgs};
use super::http::{parse, Answer, Api, Failure};
use super::model::{Lookup, Payment, PaymentState, Payments, ReversalAnswer, Settlement, Terminals};
use super::render::{self, Out};
use super::Exit;

/// The longest single wait asked of the API while polling; the poll repeats until the operator's wait
/// is spent.
const POLL_WAIT: Duration = Duration::from_secs(10);
/// Polls are at least this far apart, should the API answer a poll at once without news.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Runs one verb.
pub(crate) async fn run(api: &Api, command: &ClientCommand, out: &Out) -> Exit {
    match command {
        ClientCommand::Lookup { query, .. } => lookup(api, query, out).await,
        ClientCommand::Collect(args) => collect(api, args, out).await,
        ClientCommand::Void { payment, wait, .. } => {
            reverse(api, payment, "void", Map::new(), Duration::from_secs(*wait), out).await
        }
        ClientCommand::Refund { payment, amount, wait, .. } => {
            let mut body = Map::new();
            if let Some(amount) = amount {
                body.insert("amount".to_owned(), Value::from(amount.clone()));
            }
            reverse(api, payment, "refund", body, Duration::from_secs(*wait), out).await
        }
        ClientCommand::Query { payment, .. } => query(api, payment, out).await,
        ClientCommand::Settle { terminal, .. } => settle(api, terminal, out).await,
        ClientCommand::Payments(args) => payments(api, args, out).await,
        ClientCommand::Terminals { .. } => terminals(api, out).await,
        ClientCommand::Ledger(command) => super::ledger::ledger(api, command, out).await,
        ClientCommand::Reconcile(args) => super::ledger::reconcile(api, args, out).await,
        ClientCommand::Report(args) => super::report::report(api, args, out).await,
    }
}

/// `wait` in the API's milliseconds.
fn millis(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
}

/// The exit status a payment's state gives: open is unknown, declined or not charged is 3.
fn payment_exit(state: PaymentState) -> Exit {
    match state {
        PaymentState::Created | PaymentState::Sent | PaymentState::Unknown => Exit::Unknown,
        PaymentState::Declined | PaymentState::NotCharged => Exit::Declined,
        PaymentState::Approved | PaymentState::Forwarded | PaymentState::Voided | PaymentState::Refunded => Exit::Done,
    }
}

async fn lookup(api: &Api, query: &str, out: &Out) -> Exit {
    let answer = match api.get(api.url(&["v1", "lookup", query], &[])).await {
        Ok(answer) => answer,
        Err(f) => return out.failure(&f),
    };
    match parse::<Lookup>(&answer) {
        Ok(found) => {
            out.answer(&answer.text, || render::lookup(&found));
            Exit::Done
        }
        Err(f) => out.failure(&f),
    }
}

async fn collect(api: &Api, args: &CollectArgs, out: &Out) -> Exit {
    let wait = Duration::from_secs(args.wait);
    let deadline = Instant::now() + wait;
    let mut body = Map::new();
    let key = if args.id_number { "id_number" } else { "serial" };
    body.insert(key.to_owned(), Value::from(args.serial.clone()));
    if let Some(insurance) = args.insurance {
        body.insert("insurance".to_owned(), Value::from(insurance.as_str()));
    }
    if let Some(year) = args.year {
        body.insert("year".to_owned(), Value::from(year));
    }
    if let Some(tier) = &args.tier {
        body.insert("tier".to_owned(), Value::from(tier.clone()));
    }
    body.insert("terminal".to_owned(), Value::from(args.terminal.clone()));
    body.insert("wait_ms".to_owned(), Value::from(millis(wait)));
    let answer = match api.post(api.url(&["v1", "collect"], &[]), Some(&Value::Object(body))).await {
        Ok(answer) => answer,
        Err(f @ Failure::NoAnswer { .. }) => {
            // The SALE may have gone to the terminal: that is an open outcome, not a failure.
            out.error(&f.to_string());
            out.error(&format!(
                "the outcome is unknown: a payment may have been started; look with `zhengjiao payments --terminal {}`",
                args.terminal
            ));
            return Exit::Unknown;
        }
        Err(f) => return out.failure(&f),
    };
    let mut payment = match parse::<Payment>(&answer) {
        Ok(payment) => payment,
        Err(f) => return out.failure(&f),
    };
    let mut text = answer.text;
    if !payment.state.is_final() {
        out.notice(&format!("outcome unknown, checking with the terminal: payment {}", payment.id));
        match poll(api, &payment.id, deadline, |p| p.state.is_final()).await {
            Ok(Some((p, t))) => {
                payment = p;
                text = t;
            }
            Ok(None) => {}
            Err(f) => out.error(&format!("while checking: {f}")),
        }
    }
    out.answer(&text, || render::payment(&payment, false));
    match payment.state {
        PaymentState::Approved | PaymentState::Forwarded => Exit::Done,
        state if !state.is_final() => Exit::Unknown,
        // Declined, not charged, or an approval that was wrong and voided at once: not collected.
        _ => Exit::Declined,
    }
}

/// Polls `GET /v1/payments/{id}?wait_ms=N` until `done` holds or the deadline passes; gives the last
/// payment read and its text (`None` when no poll answered before the deadline).
async fn poll(
    api: &Api,
    id: &str,
    deadline: Instant,
    done: impl Fn(&Payment) -> bool,
) -> Result<Option<(Payment, String)>, Failure> {
    let mut last = None;
    loop {
        let started = Instant::now();
        let remaining = deadline.saturating_duration_since(started);
        if remaining.is_zero() {
            return Ok(last);
        }
        let wait_ms = millis(remaining.min(POLL_WAIT));
        let answer = api.get(api.url(&["v1", "payments", id], &[("wait_ms", wait_ms.to_string())])).await?;
        let payment = parse::<Payment>(&answer)?;
        let finished = done(&payment);
        last = Some((payment, answer.text));
        if finished {
            return Ok(last);
        }
        tokio::time::sleep_until((started + POLL_INTERVAL).min(deadline)).await;
    }
}

/// `void` and `refund`: `POST /v1/payments/{id}/{kind}`, then polling the payment for the reversal's
/// outcome while it is open.
async fn reverse(api: &Api, id: &str, kind: &str, mut body: Map<String, Value>, wait: Duration, out: &Out) -> Exit {
    let deadline = Instant::now() + wait;
    body.insert("wait_ms".to_owned(), Value::from(millis(wait)));
    let answer = match api.post(api.url(&["v1", "payments", id, kind], &[]), Some(&Value::Object(body))).await {
        Ok(answer) => answer,
        Err(f @ Failure::NoAnswer { .. }) => {
            out.error(&f.to_string());
            out.error(&format!("the outcome of the {kind} is unknown; look with `zhengjiao query {id}`"));
            return Exit::Unknown;
        }
        Err(f) => return out.failure(&f),
    };
    let ReversalAnswer { mut payment, mut reversal } = match parse::<ReversalAnswer>(&answer) {
        Ok(a) => a,
        Err(f) => return out.failure(&f),
    };
    let mut text = answer.text;
    if !reversal.state.is_final() {
        out.notice(&format!("outcome unknown, checking with the terminal: {kind} {}", reversal.id));
        let rid = reversal.id.clone();
        let found = |p: &Payment| p.reversals.iter().find(|r| r.id == rid).cloned();
        match poll(api, id, deadline, |p| found(p).is_some_and(|r| r.state.is_final())).await {
            Ok(Some((p, t))) => {
                if let Some(r) = found(&p) {
                    if let Some(t) = reversal_text(&t, &rid) {
                        text = t;
                    }
                    payment = p;
                    reversal = r;
                }
            }
            Ok(None) => {}
            Err(f) => out.error(&format!("while checking: {f}")),
        }
    }
    out.answer(&text, || render::reversal_answer(&payment, &reversal));
    match reversal.state {
        PaymentState::Approved => Exit::Done,
        state if !state.is_final() => Exit::Unknown,
        _ => Exit::Declined,
    }
}

/// The `{"payment": ..., "reversal": ...}` shape of a void or refund answer, built from a polled
/// payment so `--json` prints the same shape however the outcome arrived.
fn reversal_text(payment_text: &str, reversal_id: &str) -> Option<String> {
    let payment: Value = serde_json::from_str(payment_text).ok()?;
    let reversal = payment
        .get("reversals")?
        .as_array()?
        .iter()
        .find(|r| r.get("id").and_then(Value::as_str) == Some(reversal_id))?
        .clone();
    let mut payment = payment;
    if let Some(p) = payment.as_object_mut() {
        // The answers of void and refund carry no history.
        p.remove("history");
    }
    Some(json!({"payment": payment, "reversal": reversal}).to_string())
}

async fn query(api: &Api, id: &str, out: &Out) -> Exit {
    let answer = match api.post(api.url(&["v1", "payments", id, "query"], &[]), None).await {
        Ok(answer) => answer,
        Err(f) => return out.failure(&f),
    };
    match parse::<Payment>(&answer) {
        Ok(payment) => {
            out.answer(&answer.text, || render::payment(&payment, true));
            let open_reversal = payment.reversals.iter().any(|r| !r.state.is_final());
            if open_reversal {
                Exit::Unknown
            } else {
                payment_exit(payment.state)
            }
        }
        Err(f) => out.failure(&f),
    }
}

async fn settle(api: &Api, terminal: &str, out: &Out) -> Exit {
    let answer = match api.post(api.url(&["v1", "terminals", terminal, "settle"], &[]), None).await {
        Ok(answer) => answer,
        Err(f) => return out.failure(&f),
    };
    match parse::<Settlement>(&answer) {
        Ok(s) => {
            out.answer(&answer.text, || render::settlement(&s));
            if s.balanced {
                Exit::Done
            } else {
                Exit::NotBalanced
            }
        }
        Err(f) => out.failure(&f),
    }
}

async fn payments(api: &Api, args: &PaymentsArgs, out: &Out) -> Exit {
    let mut query = Vec::new();
    if let Some(date) = &args.date {
        query.push(("date", date.clone()));
    }
    if let Some(state) = args.state {
        query.push(("state", state.as_str().to_owned()));
    }
    if let Some(terminal) = &args.terminal {
        query.push(("terminal", terminal.clone()));
    }
    if let Some(point) = &args.collection_point {
        query.push(("collection_point", point.clone()));
    }
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    listing::<Payments>(api, api.url(&["v1", "payments"], &query), out, render::payments).await
}

async fn terminals(api: &Api, out: &Out) -> Exit {
    listing::<Terminals>(api, api.url(&["v1", "terminals"], &[]), out, render::terminals).await
}

async fn listing<T: serde::de::DeserializeOwned>(
    api: &Api,
    url: reqwest::Url,
    out: &Out,
    summary: fn(&T) -> String,
) -> Exit {
    let answer: Answer = match api.get(url).await {
        Ok(answer) => answer,
        Err(f) => return out.failure(&f),
    };
    match parse::<T>(&answer) {
        Ok(list) => {
            out.answer(&answer.text, || summary(&list));
            Exit::Done
        }
        Err(f) => out.failure(&f),
    }
}
