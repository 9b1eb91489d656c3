//! The collection day: collections spread over the three terminals, a few at a time, with declines, a
//! void, a lost answer resolved by QUERY, a midday settlement and a refund from the closed batch, a
//! ledger outage, and the settlement of every terminal at the end of the day.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use zhengjiao_protocol::message::ResponseCode;
use zhengjiao_simulator::ledger::LedgerHandle;
use zhengjiao_simulator::terminal::{FaultsPatch, TerminalSimHandle};

use super::roster::{GenLine, Roster};
use crate::collect::{
    CollectRequest, Collection, LineChoice, Operator, PaymentView, ReversalRequest, ServiceError, SettlementView,
};
use crate::domain::{CollectionSerial, Fen, Hardship, Insurance};
use crate::journal::{PaymentState, Store};
use crate::ledger::Forwarder;
use crate::link::LinkState;
use crate::policy::Policy;

/// How long one collection, void or refund waits for its outcome.
const WAIT: Duration = Duration::from_secs(60);
/// Money requests in flight per terminal (the daemon queues them on the terminal's link).
const PER_TERMINAL: usize = 2;
/// The decline codes queued on the simulated terminals, in turn, with what the card holder hears.
const DECLINES: [&str; 4] = ["51", "05", "61", "T1"];

/// Everything the day works with.
pub(super) struct World {
    pub(super) collection: Collection,
    pub(super) forwarder: Forwarder,
    /// Terminals T01 and T02 (indices 0 and 1).
    pub(super) tcp: TerminalSimHandle,
    /// Terminal T03 (index 0).
    pub(super) pty: TerminalSimHandle,
    pub(super) ledger: LedgerHandle,
    /// The collectors of the point, one per terminal in turn.
    pub(super) collectors: Vec<Operator>,
    pub(super) admin: Operator,
    /// The configured terminal names, T01..T03.
    pub(super) terminals: Vec<String>,
}

impl World {
    fn queue_decline(&self, terminal: usize, code: &str) {
        let Ok(code) = ResponseCode::new(code) else { return };
        let queued = match terminal {
            0 | 1 => self.tcp.queue_outcome(terminal, code),
            _ => self.pty.queue_outcome(0, code),
        };
        if let Err(e) = queued {
            tracing::warn!(error = %e, "demo: cannot queue a decline");
        }
    }

    fn collector_for(&self, terminal: usize) -> Operator {
        self.collectors.get(terminal % self.collectors.len().max(1)).cloned().unwrap_or_else(|| self.admin.clone())
    }
}

/// One collection to make: a line and, for pension, the tier the payer chooses.
#[derive(Debug, Clone)]
pub(super) struct Job {
    serial: String,
    insurance: Insurance,
    tier: Option<Fen>,
}

/// The collections of the day and the lines kept aside for the scripted incidents.
pub(super) struct Plan {
    pub(super) jobs: Vec<Job>,
    spare: Vec<Job>,
}

fn tier(rng: &mut fastrand::Rng, tiers: &[Fen]) -> Option<Fen> {
    // Most payers choose a low tier.
    let wanted = match rng.u32(0..100) {
        0..=34 => Some(200),
        35..=54 => Some(300),
        55..=69 => Some(500),
        70..=79 => Some(1000),
        _ => None,
    };
    wanted
        .and_then(Fen::from_yuan)
        .filter(|t| tiers.contains(t))
        .or_else(|| tiers.get(rng.usize(..tiers.len().max(1))).copied())
}

/// Picks `count` distinct lines of the roster to collect today, and a few standard medical lines
/// besides for the incidents.
pub(super) fn plan(roster: &Roster, count: usize, policy: &Policy, seed: u64) -> Plan {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut order: Vec<&GenLine> = roster.lines.iter().collect();
    rng.shuffle(&mut order);
    let job = |l: &GenLine, rng: &mut fastrand::Rng| Job {
        serial: l.serial.clone(),
        insurance: l.insurance,
        tier: (l.insurance == Insurance::Pension).then(|| tier(rng, policy.pension_tiers())).flatten(),
    };
    let mut spare = Vec::new();
    let mut jobs = Vec::new();
    for l in order {
        if spare.len() < 8 && l.insurance == Insurance::Medical && l.hardship == Hardship::None {
            spare.push(job(l, &mut rng));
        } else if jobs.len() < count {
            jobs.push(job(l, &mut rng));
        }
        if jobs.len() >= count && spare.len() >= 8 {
            break;
        }
    }
    Plan { jobs, spare }
}

fn request(job: &Job, terminal: &str) -> Result<CollectRequest, ServiceError> {
    let serial = CollectionSerial::parse(&job.serial).map_err(|e| ServiceError::bad("serial", e.to_string()))?;
    Ok(CollectRequest {
        line: LineChoice::Serial { serial, insurance: Some(job.insurance) },
        year: None,
        tier: job.tier,
        amount: None,
        terminal: terminal.to_owned(),
        wait: Some(WAIT),
    })
}

fn is_approved(v: &PaymentView) -> bool {
    matches!(v.payment.state, PaymentState::Approved | PaymentState::Forwarded) && v.is_bound()
}

/// What became of one job.
#[derive(Debug, Default)]
struct JobResult {
    /// The approved payment: id, terminal index, amount.
    approved: Option<(String, usize, Fen)>,
    declines: u32,
    problem: Option<String>,
}

/// Collects one job on terminal `t`; a declined card is tried once more (the payer hands another card).
async fn collect_job(collection: Collection, who: Operator, job: Job, t: usize, name: String) -> JobResult {
    let mut result = JobResult::default();
    for _ in 0..2 {
        let req = match request(&job, &name) {
            Ok(r) => r,
            Err(e) => {
                result.problem = Some(e.to_string());
                return result;
            }
        };
        match collection.collect(&who, req).await {
            Ok(v) if is_approved(&v) => {
                result.approved = Some((v.payment.id.as_str().to_owned(), t, v.payment.amount));
                return result;
            }
            Ok(v) if v.payment.state == PaymentState::Declined => result.declines += 1,
            Ok(v) => {
                result.problem = Some(format!("payment {} on {name} is {}", v.payment.id.as_str(), v.payment.state));
                return result;
            }
            Err(e) => {
                result.problem = Some(format!("{} on {name}: {e}", job.serial));
                return result;
            }
        }
    }
    result
}

/// What the day did, for the summary.
#[derive(Debug, Default)]
pub(super) struct DayLog {
    /// Payments approved (and bound) by the collection rounds.
    pub(super) approved: Vec<(String, usize, Fen)>,
    /// Cards declined in the rounds.
    pub(super) declines: u32,
    /// Collections that ended otherwise (refused, still open): their messages.
    pub(super) problems: Vec<String>,
    /// The settlements of the day, in order.
    pub(super) settlements: Vec<SettlementView>,
    /// True when every settlement balanced.
    pub(super) all_settled_balanced: bool,
}

/// Prints a line above the progress bar.
fn say(bar: &ProgressBar, text: impl AsRef<str>) {
    bar.suspend(|| println!("{}", text.as_ref()));
}

/// One round of collections, spread over the terminals, a few at a time; every `decline_every`-th job
/// has a decline code queued on its terminal.
async fn round(world: &World, jobs: &[Job], first: usize, decline_every: usize, bar: &ProgressBar, log: &mut DayLog) {
    let terminals = world.terminals.len().max(1);
    let permits = Arc::new(Semaphore::new(PER_TERMINAL * terminals));
    let mut set = JoinSet::new();
    for (i, job) in jobs.iter().enumerate() {
        let n = first + i;
        let t = n % terminals;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
        // Not in the last few of the round, so every queued code meets a sale of this round.
        if decline_every > 0 && n % decline_every == decline_every / 2 && i + 2 * terminals < jobs.len() {
            world.queue_decline(t, DECLINES[(n / decline_every) % DECLINES.len()]);
        }
        let collection = world.collection.clone();
        let who = world.collector_for(t);
        let name = world.terminals.get(t).cloned().unwrap_or_default();
        let job = job.clone();
        set.spawn(async move {
            let r = collect_job(collection, who, job, t, name).await;
            drop(permit);
            r
        });
        while let Some(done) = set.try_join_next() {
            account(done, bar, log);
        }
    }
    while let Some(done) = set.join_next().await {
        account(done, bar, log);
    }
}

fn account(done: Result<JobResult, tokio::task::JoinError>, bar: &ProgressBar, log: &mut DayLog) {
    bar.inc(1);
    match done {
        Ok(r) => {
            log.declines += r.declines;
            if let Some(a) = r.approved {
                log.approved.push(a);
            }
            if let Some(p) = r.problem {
                log.problems.push(p);
            }
        }
        Err(e) => log.problems.push(format!("a collection task failed: {e}")),
    }
}

/// Collects spare lines on terminal `t` until one is approved; returns its view.
async fn approved_spare(world: &World, spare: &mut Vec<Job>, t: usize) -> Result<PaymentView, String> {
    let name = world.terminals.get(t).cloned().unwrap_or_default();
    while let Some(job) = spare.pop() {
        let req = request(&job, &name).map_err(|e| e.to_string())?;
        match world.collection.collect(&world.collector_for(t), req).await {
            Ok(v) if is_approved(&v) => return Ok(v),
            Ok(_) => continue,
            Err(e) => return Err(format!("collection on {name}: {e}")),
        }
    }
    Err("no spare line left for the incident".to_owned())
}

/// `李**` for a name: the surname and a star per other character.
pub(super) fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    let first = chars.next().map(String::from).unwrap_or_default();
    first + &"*".repeat(chars.count())
}

/// The payer of a payment, masked: `李** 410403********1234`.
async fn payer(world: &World, v: &PaymentView) -> String {
    let line = match &v.line {
        Some(l) => Some(l.clone()),
        None => {
            let p = &v.payment.line;
            world.collection.store().roster_line(&p.serial, p.insurance, p.year).await.ok().flatten()
        }
    };
    line.map(|l| format!("{} {}", mask_name(l.line.name.as_str()), l.line.id_number.masked())).unwrap_or_default()
}

fn settle_text(s: &SettlementView) -> String {
    let t = &s.record.terminal_totals;
    let mut text = format!(
        "{} batch {}: {} sales {} yuan, {} voids {}, {} refunds {} — {}",
        s.terminal_name.as_deref().unwrap_or(s.record.terminal.as_str()),
        s.record.batch.as_str(),
        t.sale_count,
        super::summary::yuan(t.sale_fen),
        t.void_count,
        super::summary::yuan(t.void_fen),
        t.refund_count,
        super::summary::yuan(t.refund_fen),
        if s.record.balanced { "balanced with the journal (平账)" } else { "NOT balanced with the journal" }
    );
    if !s.record.balanced {
        for (what, terminal, journal) in
            crate::collect::differences(&s.record.terminal_totals, &s.record.journal_totals)
        {
            text.push_str(&format!("\n        {what}: terminal {terminal}, journal {journal}"));
        }
    }
    text
}

async fn settle(world: &World, name: &str, log: &mut DayLog) -> Result<String, String> {
    let s = world.collection.settle(&world.admin, name).await.map_err(|e| format!("settlement of {name}: {e}"))?;
    log.all_settled_balanced &= s.record.balanced;
    let text = settle_text(&s);
    log.settlements.push(s);
    Ok(text)
}

/// Waits until every terminal is signed in and recorded.
pub(super) async fn wait_ready(collection: &Collection, bound: Duration) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    loop {
        let terminals = collection.terminals();
        if terminals.iter().all(|(_, s)| s.state == LinkState::Ready) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let states: Vec<String> = terminals
                .iter()
                .map(|(_, s)| {
                    format!(
                        "{} {}{}",
                        s.name,
                        crate::collect::link_state_name(s.state),
                        s.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
                    )
                })
                .collect();
            return Err(format!("the terminals did not sign in within {bound:?}: {}", states.join(", ")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The day's settings.
pub(super) struct DaySettings {
    /// Every how many collections a decline code is queued.
    pub(super) decline_every: usize,
    /// How long the ledger is down.
    pub(super) outage: Duration,
}

/// Runs the collection day: morning round, incidents, midday settlement and refund, ledger outage,
/// afternoon round, end-of-day settlement of every terminal.
pub(super) async fn run_day(
    world: &World,
    plan: Plan,
    settings: &DaySettings,
    bar: &ProgressBar,
) -> Result<DayLog, String> {
    let mut log = DayLog { all_settled_balanced: true, ..DayLog::default() };
    let mut spare = plan.spare;
    let morning = plan.jobs.len() / 2;
    let (am, pm) = plan.jobs.split_at(morning);

    say(
        bar,
        format!(
            "  morning: {} collections on {} terminals, {} at a time",
            am.len(),
            world.terminals.len(),
            PER_TERMINAL * world.terminals.len()
        ),
    );
    round(world, am, 0, settings.decline_every, bar, &mut log).await;

    // A void (撤销): the collector took the wrong line and cancels at once, in the open batch.
    let t01 = world.terminals.first().cloned().unwrap_or_default();
    let v = approved_spare(world, &mut spare, 0).await?;
    let voided = world
        .collection
        .void(
            &world.collector_for(0),
            ReversalRequest { payment: v.payment.id.as_str().to_owned(), amount: None, wait: Some(WAIT) },
        )
        .await
        .map_err(|e| format!("void: {e}"))?;
    say(
        bar,
        format!(
            "  void (撤销): payment {} of {} yuan on {t01} for line {} ({}): {}",
            voided.payment.id.as_str(),
            voided.payment.amount,
            voided.payment.line.serial,
            payer(world, &voided).await,
            voided.payment.state
        ),
    );

    // A lost answer: T02 approves the next sale and drops the connection before answering.
    let t02 = world.terminals.get(1).cloned().unwrap_or_default();
    let mut lost = None;
    for _ in 0..4 {
        world
            .tcp
            .patch_faults(1, &FaultsPatch { approve_drop: Some(1.0), ..FaultsPatch::default() })
            .map_err(|e| e.to_string())?;
        let got = approved_or_unknown(world, &mut spare, 1).await;
        world
            .tcp
            .patch_faults(1, &FaultsPatch { approve_drop: Some(0.0), ..FaultsPatch::default() })
            .map_err(|e| e.to_string())?;
        let v = got?;
        let history = world.collection.store().payment_history(&v.payment.id).await.map_err(|e| e.to_string())?;
        if history.iter().any(|h| h.to == PaymentState::Unknown) {
            lost = Some(v);
            break;
        }
    }
    let lost = lost.ok_or("the lost answer could not be staged on T02")?;
    let lost = resolve(world, lost).await?;
    say(
        bar,
        format!(
            "  lost answer: T02 approved payment {} ({} yuan, {}) and dropped the line before answering;\n    \
             the daemon recorded it unknown, asked {t02} (QUERY, 交易查询) after it signed in again: {} — \
             charged once, recorded once",
            lost.payment.id.as_str(),
            lost.payment.amount,
            payer(world, &lost).await,
            lost.payment.state
        ),
    );

    // Midday: T01 settles its morning batch.
    let text = settle(world, &t01, &mut log).await?;
    say(bar, format!("  midday settlement (结算): {text}"));

    // The tax ledger goes down for a while; collections go on, the outbox waits.
    world.ledger.down_for(settings.outage);
    say(
        bar,
        format!(
            "  ledger outage: the tax ledger answers 503 for {} s; the forwarder backs off, payments go on",
            settings.outage.as_secs()
        ),
    );

    // A refund (退货) of a morning payment of T01, from the batch settled at midday.
    let refundable = log
        .approved
        .iter()
        .find(|(id, t, _)| *t == 0 && *id != voided.payment.id.as_str())
        .cloned()
        .ok_or("no morning payment on T01 to refund")?;
    let refunded = world
        .collection
        .refund(
            &world.collector_for(0),
            ReversalRequest { payment: refundable.0.clone(), amount: Some(refundable.2), wait: Some(WAIT) },
        )
        .await
        .map_err(|e| format!("refund: {e}"))?;
    say(
        bar,
        format!(
            "  refund (退货): payment {} of {} yuan ({}), batch {} closed at midday: {}",
            refunded.payment.id.as_str(),
            refunded.payment.amount,
            payer(world, &refunded).await,
            refunded.payment.pos.batch.as_ref().map(|b| b.as_str().to_owned()).unwrap_or_default(),
            refunded.payment.state
        ),
    );

    say(bar, format!("  afternoon: {} collections", pm.len()));
    round(world, pm, am.len(), settings.decline_every, bar, &mut log).await;

    // A second payment for a paid line is refused before anything reaches a terminal.
    if let Some((id, t, _)) = log.approved.last().cloned() {
        if let Ok(v) = world.collection.view(&parse_ref(&id)?, false).await {
            let job = Job {
                serial: v.payment.line.serial.as_str().to_owned(),
                insurance: v.payment.line.insurance,
                tier: Some(v.payment.amount).filter(|_| v.payment.line.insurance == Insurance::Pension),
            };
            let name = world.terminals.get(t).cloned().unwrap_or_default();
            match world
                .collection
                .collect(&world.collector_for(t), request(&job, &name).map_err(|e| e.to_string())?)
                .await
            {
                Err(ServiceError::Policy { rule, .. }) => say(
                    bar,
                    format!(
                        "  a second payment for line {} refused by the policy ({}) before anything was sent",
                        job.serial,
                        rule.code()
                    ),
                ),
                Err(e) => say(bar, format!("  a second payment for line {}: {e}", job.serial)),
                Ok(v) => return Err(format!("a second payment for a paid line was taken: {}", v.payment.id.as_str())),
            }
        }
    }
    bar.finish_and_clear();

    println!("  end of day: settling every terminal");
    for name in world.terminals.clone() {
        let text = settle(world, &name, &mut log).await?;
        println!("    {text}");
    }
    Ok(log)
}

fn parse_ref(id: &str) -> Result<zhengjiao_protocol::EcrReference, String> {
    zhengjiao_protocol::EcrReference::new(id).map_err(|e| format!("payment id {id}: {e}"))
}

/// Collects spare lines on terminal `t` until one is approved or unknown.
async fn approved_or_unknown(world: &World, spare: &mut Vec<Job>, t: usize) -> Result<PaymentView, String> {
    let name = world.terminals.get(t).cloned().unwrap_or_default();
    while let Some(job) = spare.pop() {
        let mut req = request(&job, &name).map_err(|e| e.to_string())?;
        req.wait = Some(Duration::from_secs(30));
        match world.collection.collect(&world.collector_for(t), req).await {
            Ok(v) if is_approved(&v) || v.payment.state.is_under_way() => return Ok(v),
            Ok(_) => continue,
            Err(e) => return Err(format!("collection on {name}: {e}")),
        }
    }
    Err("no spare line left for the incident".to_owned())
}

/// Asks the terminal about a payment until its outcome is known (the recovery task usually has).
async fn resolve(world: &World, v: PaymentView) -> Result<PaymentView, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = v.payment.id.as_str().to_owned();
    let mut v = v;
    while v.payment.state.is_under_way() {
        if Instant::now() >= deadline {
            return Err(format!("payment {id} is still {} after 30 s", v.payment.state));
        }
        match world.collection.query(&world.admin, &id).await {
            Ok(now) => v = now,
            Err(ServiceError::TerminalUnavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(format!("QUERY of {id}: {e}")),
        }
    }
    Ok(v)
}
