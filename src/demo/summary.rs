//! The day's report (日结), computed from the journal, and the reconciliation (日清日结) printed.

use std::collections::BTreeMap;

use crate::collect::Collection;
use crate::domain::{CollectionPointCode, Fen, Hardship, Insurance};
use crate::journal::{PaymentFilter, PaymentState, Store};
use crate::ledger::Reconciliation;

/// Yuan with thousands separators: `138,840.00`.
pub(super) fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let text = Fen::from_fen(fen.abs()).to_yuan_string();
    let (int, dec) = text.split_once('.').unwrap_or((text.as_str(), "00"));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{dec}")
}

/// Columns a text takes on a terminal: CJK characters take two.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| match u32::from(c) {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

/// `s` padded with spaces to `columns` terminal columns.
fn pad(s: &str, columns: usize) -> String {
    format!("{s}{}", " ".repeat(columns.saturating_sub(width(s))))
}

/// A yuan string of the API (`154180.00`) with thousands separators.
fn grouped(amount: &str) -> String {
    let negative = amount.starts_with('-');
    match Fen::from_yuan_str(amount.trim_start_matches('-')) {
        Ok(f) => yuan(if negative { -f.as_fen() } else { f.as_fen() }),
        Err(_) => amount.to_owned(),
    }
}

/// A count and a total.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sum {
    pub(super) count: u64,
    pub(super) fen: i64,
}

impl Sum {
    fn add(&mut self, fen: Fen) {
        self.count += 1;
        self.fen += fen.as_fen();
    }
}

/// The day at one collection point, from the journal.
#[derive(Debug, Default)]
pub(super) struct DaySummary {
    /// Collected and kept (approved or forwarded), per insurance.
    pub(super) medical: BTreeMap<(Hardship, i64), Sum>,
    pub(super) pension: BTreeMap<i64, Sum>,
    pub(super) voided: Sum,
    pub(super) refunded: Sum,
    /// Declines by response code, with the terminal's text.
    pub(super) declined: BTreeMap<String, (u64, String)>,
    pub(super) not_charged: u64,
    /// Outcomes still open (should be none after settlement).
    pub(super) open: u64,
    /// Payments whose outcome was once unknown and was settled by the terminal's answer to QUERY.
    pub(super) resolved_by_query: u64,
    /// All payments recorded that day.
    pub(super) payments: u64,
}

impl DaySummary {
    /// Payments collected and kept.
    pub(super) fn approved(&self) -> Sum {
        self.medical
            .values()
            .chain(self.pension.values())
            .fold(Sum::default(), |a, s| Sum { count: a.count + s.count, fen: a.fen + s.fen })
    }

    /// Cards declined.
    pub(super) fn declines(&self) -> u64 {
        self.declined.values().map(|(n, _)| n).sum()
    }

    fn insurance(&self, insurance: Insurance) -> Sum {
        let values: Vec<&Sum> = match insurance {
            Insurance::Medical => self.medical.values().collect(),
            Insurance::Pension => self.pension.values().collect(),
        };
        values.into_iter().fold(Sum::default(), |a, s| Sum { count: a.count + s.count, fen: a.fen + s.fen })
    }
}

/// Reads the day's payments of `point` from the journal.
pub(super) async fn day_summary(
    collection: &Collection,
    date: time::Date,
    point: &CollectionPointCode,
) -> Result<DaySummary, String> {
    let store = collection.store();
    let filter =
        PaymentFilter { date: Some(date), collection_point: Some(point.clone()), ..PaymentFilter::all(1_000_000) };
    let payments = store.payments(filter).await.map_err(|e| format!("journal: {e}"))?;
    let mut s = DaySummary { payments: payments.len() as u64, ..DaySummary::default() };
    for p in payments {
        let history = store.payment_history(&p.id).await.map_err(|e| format!("journal: {e}"))?;
        let was_unknown = history.iter().any(|h| h.to == PaymentState::Unknown);
        if was_unknown && !p.state.is_under_way() && p.state != PaymentState::NotCharged {
            s.resolved_by_query += 1;
        }
        match p.state {
            PaymentState::Approved | PaymentState::Forwarded => match p.line.insurance {
                Insurance::Medical => {
                    let line = store
                        .roster_line(&p.line.serial, p.line.insurance, p.line.year)
                        .await
                        .map_err(|e| format!("journal: {e}"))?;
                    let hardship = line.map(|l| l.line.hardship).unwrap_or_default();
                    s.medical.entry((hardship, p.amount.as_fen())).or_default().add(p.amount);
                }
                Insurance::Pension => s.pension.entry(p.amount.as_fen()).or_default().add(p.amount),
            },
            PaymentState::Voided => s.voided.add(p.amount),
            PaymentState::Refunded => s.refunded.add(p.amount),
            PaymentState::Declined => {
                let code = p.pos.code.map(|c| c.as_str().to_owned()).unwrap_or_else(|| "??".to_owned());
                let text = p.pos.text.clone().unwrap_or_default();
                let e = s.declined.entry(code).or_insert((0, text));
                e.0 += 1;
            }
            PaymentState::NotCharged => s.not_charged += 1,
            _ => s.open += 1,
        }
    }
    Ok(s)
}

fn hardship_label(h: Hardship) -> &'static str {
    match h {
        Hardship::None => "standard",
        Hardship::Dibao => "低保 (subsidised)",
        Hardship::Tekun => "特困 (subsidised)",
    }
}

/// Prints the day in figures from the journal. With `tiers`, the table of insurances and pension tiers
/// too (when the daily report, which has it, could not be printed).
pub(super) fn print_summary(s: &DaySummary, point: &str, date: time::Date, commission: Fen, tiers: bool) {
    println!();
    println!("The day in figures (from the journal) — collection point {point}, {date}");
    let all = s.approved();
    let (medical, pension) = (s.insurance(Insurance::Medical), s.insurance(Insurance::Pension));
    println!(
        "  collected and kept (征缴): {} payments, {} yuan — 医疗 medical {} ({} yuan), 养老 pension {} ({} yuan)",
        all.count,
        yuan(all.fen),
        medical.count,
        yuan(medical.fen),
        pension.count,
        yuan(pension.fen)
    );
    let by_hardship: Vec<String> = s
        .medical
        .iter()
        .map(|((h, fen), sum)| {
            format!("{} {} ×{} = {}", hardship_label(*h), Fen::from_fen(*fen), sum.count, yuan(sum.fen))
        })
        .collect();
    println!("  医疗 by hardship (困难类别): {}", by_hardship.join("; "));
    if tiers {
        println!("  {} {:>8} {:>16}", pad("养老 pension tier (档次)", 34), "payments", "total (yuan)");
        for (fen, sum) in &s.pension {
            println!("  {} {:>8} {:>16}", pad(&format!("    {}", Fen::from_fen(*fen)), 34), sum.count, yuan(sum.fen));
        }
    }
    let commission_fen = commission.as_fen().saturating_mul(i64::try_from(all.count).unwrap_or(i64::MAX));
    println!("  commission (代征手续费) at {} yuan per person-time: {} yuan", commission, yuan(commission_fen));
    println!(
        "  voided (撤销): {} ({} yuan); refunded (退货): {} ({} yuan) — not in the collected figures",
        s.voided.count,
        yuan(s.voided.fen),
        s.refunded.count,
        yuan(s.refunded.fen)
    );
    let declines: Vec<String> = s.declined.iter().map(|(code, (n, text))| format!("{code} {text} ×{n}")).collect();
    println!(
        "  declined (拒付): {} — {}",
        s.declines(),
        if declines.is_empty() { "none".to_owned() } else { declines.join(", ") }
    );
    println!(
        "  lost answers resolved by QUERY: {}; not charged: {}; outcomes still open: {}; payments recorded: {}",
        s.resolved_by_query, s.not_charged, s.open, s.payments
    );
}

/// Prints the reconciliation.
pub(super) fn print_reconciliation(r: &Reconciliation) {
    println!();
    println!(
        "Reconciliation (日清日结) — {}, collection point {}",
        r.date,
        r.collection_point.as_deref().unwrap_or("all")
    );
    println!("  journal vs tax ledger, per insurance:");
    for l in &r.lines {
        println!(
            "    {:<8} journal {} payments {} yuan, {} reversals {} yuan, net {} | ledger {} payments, net {}: {}",
            l.insurance,
            l.journal.payments,
            grouped(&l.journal.payment_total),
            l.journal.reversals,
            grouped(&l.journal.reversal_total),
            grouped(&l.journal.net),
            l.ledger.payments,
            grouped(&l.ledger.net),
            if l.agrees { "agrees" } else { "DIFFERS" }
        );
    }
    println!("  terminals vs journal:");
    for t in &r.terminals {
        println!(
            "    {}: {} batches settled, terminal net {}, journal net {}, unsettled entries {}: {}",
            t.collection_point,
            t.settlements.len(),
            grouped(&t.terminal_net),
            grouped(&t.journal_net),
            t.unsettled_entries.len(),
            if t.agrees { "agrees" } else { "DIFFERS" }
        );
    }
    println!(
        "  ledger lookups: {} entries checked one by one{}; missing at the ledger: {}; unknown to the journal: {}",
        r.lookups.asked,
        if r.lookups.truncated { " (truncated)" } else { "" },
        r.missing_at_ledger.len(),
        r.unknown_to_journal.len()
    );
    for d in &r.differences {
        println!(
            "  difference {} {} {} {}: journal {}, other {}",
            d.what,
            d.collection_point,
            d.insurance.as_deref().unwrap_or("-"),
            d.field,
            d.journal,
            d.other
        );
    }
    for m in &r.missing_at_ledger {
        println!("  missing at the ledger: {} {} {} ({}): {}", m.entry_id, m.kind, m.amount, m.journal_state, m.note);
    }
    if r.balanced {
        println!("  reconciliation: balanced (平账) — terminals, journal and tax ledger agree to the fen");
    } else {
        println!("  reconciliation: NOT balanced — see the differences above");
    }
}

#[cfg(test)]
mod tests {
    use super::yuan;

    #[test]
    fn yuan_groups_thousands() {
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(28_000), "280.00");
        assert_eq!(yuan(13_884_000), "138,840.00");
        assert_eq!(yuan(-100_000_000), "-1,000,000.00");
    }
}
