//! `--baseline FILE`: compares this run with an earlier JSON report of this
//! tool (throughput, and p99 per priority).
//!
//! Only the keys every version of the report has are required
//! (`messages_per_sec`, and `priority`, `messages`, `p99_us` of each lane);
//! anything else is ignored, and `config` only produces warnings when it
//! differs. A file that cannot be read or parsed is an error before the
//! run starts (exit status 2).

use std::fmt::Write as _;
use std::path::Path;

use lanebus::Priority;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::common::group;
use crate::report::{json_config, Summary};
use crate::Args;

#[derive(Deserialize)]
struct RawReport {
    #[serde(default)]
    config: Map<String, Value>,
    messages_per_sec: f64,
    lanes: Vec<RawLane>,
    verification: Option<RawVerification>,
}

#[derive(Deserialize)]
struct RawLane {
    priority: String,
    messages: u64,
    p99_us: f64,
}

#[derive(Deserialize)]
struct RawVerification {
    ok: bool,
}

/// An earlier report, as far as comparisons need it.
pub struct Baseline {
    path: String,
    config: Map<String, Value>,
    messages_per_sec: f64,
    /// Messages and p99 per priority, by `Priority::index`.
    lanes: [Option<(u64, f64)>; 4],
    verified: Option<bool>,
}

impl Baseline {
    /// Reads and checks a JSON report.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
        let raw: RawReport = serde_json::from_str(&text)
            .map_err(|e| format!("not a JSON report of this tool ({e})"))?;
        if !raw.messages_per_sec.is_finite() || raw.messages_per_sec < 0.0 {
            return Err(format!(
                "messages_per_sec is {}, not a rate",
                raw.messages_per_sec
            ));
        }
        let mut lanes = [None; 4];
        for lane in &raw.lanes {
            let p: Priority = lane
                .priority
                .parse()
                .map_err(|e| format!("lanes: priority {:?}: {e}", lane.priority))?;
            if !lane.p99_us.is_finite() || lane.p99_us < 0.0 {
                return Err(format!("lanes: {p}: p99_us is {}", lane.p99_us));
            }
            if lanes[p.index()]
                .replace((lane.messages, lane.p99_us))
                .is_some()
            {
                return Err(format!("lanes: {p} is listed twice"));
            }
        }
        Ok(Self {
            path: path.display().to_string(),
            config: raw.config,
            messages_per_sec: raw.messages_per_sec,
            lanes,
            verified: raw.verification.map(|v| v.ok),
        })
    }

    /// Compares `summary` with this baseline.
    /// A p99 regresses only if it rose by more than `threshold` percent
    /// and by more than `floor_us` microseconds.
    pub fn compare(
        &self,
        args: &Args,
        summary: &Summary,
        threshold: f64,
        floor_us: f64,
    ) -> Comparison {
        let mut rows = vec![Row::new(
            "throughput msg/s".into(),
            self.messages_per_sec,
            summary.rate,
            Better::Higher,
            threshold,
        )];
        for (p, latency) in &summary.lanes {
            let metric = format!("p99 {p} us");
            let row = match (self.lanes[p.index()], latency.count) {
                (None | Some((0, _)), 0) => continue,
                (Some((n, p99)), m) if n > 0 && m > 0 => {
                    let rose = latency.p99_us - p99;
                    let mut row = Row::new(metric, p99, latency.p99_us, Better::Lower, threshold);
                    row.regression &= rose > floor_us;
                    row
                }
                (Some((n, p99)), _) if n > 0 => Row::skipped(metric, Some(p99), None),
                _ => Row::skipped(metric, None, Some(latency.p99_us)),
            };
            rows.push(row);
        }
        Comparison {
            path: self.path.clone(),
            threshold_percent: threshold,
            floor_us,
            regressed: rows.iter().any(|r| r.regression),
            rows,
            warnings: self.warnings(args),
        }
    }

    /// Differences that make the comparison less meaningful.
    fn warnings(&self, args: &Args) -> Vec<String> {
        let mut out = Vec::new();
        if self.verified == Some(false) {
            out.push("the baseline run failed its verification".into());
        }
        let current = serde_json::to_value(json_config(args)).expect("config serializes");
        let Value::Object(current) = current else {
            unreachable!("the config is an object")
        };
        let mut diffs = Vec::new();
        for (key, now) in &current {
            // Reports from before `mode` existed were channel runs.
            let then = match (key.as_str(), self.config.get(key)) {
                ("mode", None) => Value::from("channel"),
                (_, Some(v)) => v.clone(),
                (_, None) => continue,
            };
            if then != *now {
                diffs.push(format!("{key} {then} (now {now})"));
            }
        }
        if !diffs.is_empty() {
            out.push(format!(
                "the baseline ran with other settings: {}",
                diffs.join(", ")
            ));
        }
        out
    }
}

#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

/// One compared figure.
#[derive(Serialize)]
pub struct Row {
    metric: String,
    baseline: Option<f64>,
    current: Option<f64>,
    /// Percent change from the baseline; `None` if either side is missing
    /// or the baseline is 0.
    change_percent: Option<f64>,
    regression: bool,
}

impl Row {
    fn new(metric: String, baseline: f64, current: f64, better: Better, threshold: f64) -> Self {
        let change = (baseline > 0.0).then(|| (current - baseline) / baseline * 100.0);
        let regression = change.is_some_and(|c| match better {
            Better::Higher => c < -threshold,
            Better::Lower => c > threshold,
        });
        Self {
            metric,
            baseline: Some(round(baseline, 1000.0)),
            current: Some(round(current, 1000.0)),
            change_percent: change.map(|c| round(c, 10.0)),
            regression,
        }
    }

    fn skipped(metric: String, baseline: Option<f64>, current: Option<f64>) -> Self {
        Self {
            metric,
            baseline,
            current,
            change_percent: None,
            regression: false,
        }
    }

    fn verdict(&self) -> &'static str {
        match (self.regression, self.change_percent) {
            (true, _) => "REGRESSION",
            (false, Some(_)) => "ok",
            (false, None) => "n/a",
        }
    }

    fn cells(&self) -> [String; 4] {
        let value = |v: Option<f64>| match v {
            None => "-".to_string(),
            Some(v) if self.metric.starts_with("throughput") => group(v.round() as u64),
            Some(v) => format!("{v:.1}"),
        };
        let change = self
            .change_percent
            .map_or("-".to_string(), |c| format!("{c:+.1}%"));
        [
            value(self.baseline),
            value(self.current),
            change,
            self.verdict().to_string(),
        ]
    }
}

/// `v` rounded to a multiple of `1 / per`.
fn round(v: f64, per: f64) -> f64 {
    (v * per).round() / per
}

/// This run against a baseline.
#[derive(Serialize)]
pub struct Comparison {
    #[serde(rename = "file")]
    pub path: String,
    threshold_percent: f64,
    /// The smallest p99 rise (µs) that counts.
    floor_us: f64,
    regressed: bool,
    rows: Vec<Row>,
    warnings: Vec<String>,
}

impl Comparison {
    /// True if some figure is worse than the baseline beyond the threshold.
    pub fn regressed(&self) -> bool {
        self.regressed
    }

    fn headline(&self) -> String {
        let verdict = if self.regressed {
            "REGRESSION"
        } else {
            "no regression"
        };
        format!(
            "baseline {}: {verdict} (threshold {}%; a p99 must also rise by more than {} us)",
            self.path, self.threshold_percent, self.floor_us
        )
    }

    pub fn text_table(&self) -> String {
        let mut s = format!("{}\n", self.headline());
        let _ = writeln!(
            s,
            "  {:<18} {:>14} {:>14} {:>10}  verdict",
            "metric", "baseline", "this run", "change"
        );
        for row in &self.rows {
            let [base, now, change, verdict] = row.cells();
            let _ = writeln!(
                s,
                "  {:<18} {base:>14} {now:>14} {change:>10}  {verdict}",
                row.metric
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        s
    }

    pub fn markdown_table(&self) -> String {
        let mut s = format!("**{}**\n\n", self.headline());
        s.push_str("| metric | baseline | this run | change | verdict |\n");
        s.push_str("|---|---:|---:|---:|---|\n");
        for row in &self.rows {
            let [base, now, change, verdict] = row.cells();
            let _ = writeln!(
                s,
                "| {} | {base} | {now} | {change} | {verdict} |",
                row.metric
            );
        }
        for w in &self.warnings {
            let _ = write!(s, "\n_warning: {w}_\n");
        }
        s
    }
}
