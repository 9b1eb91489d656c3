//! `zhengjiao report KIND`: asks the API for the report as JSON and shows it as a table, or writes it
//! as CSV, XLSX or JSON, with the same code that renders the API's own CSV and XLSX
//! ([`crate::report::Report`]), so both give the same bytes.

use std::io::Write as _;

use serde_json::Value;

use super::args::{ReportArgs, ReportFormat};
use super::http::{Api, Failure};
use super::render::Out;
use super::Exit;
use crate::report::Report;

/// Runs `zhengjiao report`.
pub(crate) async fn report(api: &Api, args: &ReportArgs, out: &Out) -> Exit {
    let format = if args.api.json { ReportFormat::Json } else { args.format };
    if format == ReportFormat::Xlsx && args.output.is_none() {
        out.error("--format xlsx needs --output FILE (a workbook is not for the terminal)");
        return Exit::Usage;
    }
    let mut query = Vec::new();
    for (name, value) in [("date", &args.date), ("month", &args.month), ("collection_point", &args.collection_point)] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    let answer = match api.get(api.url(&["v1", "reports", args.kind.as_str()], &query)).await {
        Ok(answer) => answer,
        Err(f) => return out.failure(&f),
    };
    let report = match serde_json::from_str::<Value>(&answer.text)
        .map_err(|e| e.to_string())
        .and_then(|v| Report::from_json(&v))
    {
        Ok(r) => r,
        Err(detail) => return out.failure(&Failure::BadBody { status: answer.status, detail }),
    };
    let bytes = match format {
        ReportFormat::Table => report.to_text().into_bytes(),
        ReportFormat::Csv => report.to_csv(),
        ReportFormat::Json => format!("{}\n", super::json::pretty(&answer.text)).into_bytes(),
        ReportFormat::Xlsx => match report.to_xlsx() {
            Ok(b) => b,
            Err(e) => {
                out.error(&format!("cannot write the workbook: {e}"));
                return Exit::Usage;
            }
        },
    };
    match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &bytes) {
                out.error(&format!("cannot write {}: {e}", path.display()));
                return Exit::Usage;
            }
            println!("{}: {} rows written to {}", report.kind, report.rows.len(), path.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout.write_all(&bytes).and_then(|()| stdout.flush()) {
                out.error(&format!("cannot write to standard output: {e}"));
                return Exit::Usage;
            }
        }
    }
    Exit::Done
}
