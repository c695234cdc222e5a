//! The tables `prism-load` prints: a row per measured phase, and each
//! path against its backend's baseline.

use crate::{Measured, Op};

pub struct Row {
    pub kind: String,
    pub op: Op,
    pub path: String,
    pub m: Measured,
}

pub fn print_row(kind: &str, op: &str, path: &str, m: &Measured) {
    println!(
        "{:<9} {:<4} {:<19} {:>9.0} {:>8} {:>8} {:>9} {:>6}",
        kind,
        op,
        path,
        m.throughput(),
        m.quantile_us(0.5),
        m.quantile_us(0.99),
        m.quantile_us(0.999),
        m.errors
    );
    if let Some(e) = &m.first_error {
        println!("          first error: {e}");
    }
}

/// The comparison table: each path against the first path measured for
/// its backend and operation (the direct client, or the library).
pub fn print_summary(rows: &[Row]) {
    println!(
        "\nadded cost against the baseline (the first path of each backend: `direct` where the \
         store has a client, else `library`):"
    );
    println!(
        "| backend | op | path | ops/s | throughput ratio | p50 µs | added p50 µs | p99 µs | added p99 µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut baseline: Option<&Row> = None;
    for row in rows {
        if baseline.is_none_or(|b| b.kind != row.kind || b.op != row.op) {
            baseline = Some(row);
        }
        let b = baseline.expect("set above");
        let added = |q: f64| row.m.quantile_us(q) as i64 - b.m.quantile_us(q) as i64;
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {} | {:+} | {} | {:+} |",
            row.kind,
            row.op.name(),
            row.path,
            row.m.throughput(),
            row.m.throughput() / b.m.throughput().max(f64::MIN_POSITIVE),
            row.m.quantile_us(0.5),
            added(0.5),
            row.m.quantile_us(0.99),
            added(0.99),
        );
    }
}
