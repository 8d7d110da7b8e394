//! Workers' statistics, as okanjo-conductor reports them: each worker sends its counters (jobs
//! done and failed, busy time, and the custom metrics its tasks increment) on an interval and
//! when it closes; the master keeps each worker's last report and hands out an aggregated
//! [`StatsReport`] on its own interval: per worker `{last, diff, timeSpan}`, summed
//! `{last, diff}`, and the average time span.
//!
//! The worker side ([`WorkerCounters`]) is a few atomics and a map behind a lock, touched once
//! per job; the master side ([`StatsBoard`]) is updated by the session tasks and read by the
//! master's report task.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::job::WorkerInfo;

/// How often workers report, and the master hands out a report, unless configured otherwise
/// (okanjo-conductor's `statsInterval` default).
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Most custom metrics one worker reports (names beyond are dropped, with a log line).
pub(crate) const MAX_METRICS: usize = 256;

/// Longest metric name, in bytes.
const MAX_METRIC_NAME: usize = 256;

/// The counters of one worker.
#[derive(Debug)]
pub(crate) struct WorkerCounters {
    busy_us: AtomicU64,
    custom: Mutex<BTreeMap<String, f64>>,
    last_report: Mutex<Instant>,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            busy_us: AtomicU64::new(0),
            custom: Mutex::new(BTreeMap::new()),
            last_report: Mutex::new(Instant::now()),
        }
    }
}

impl WorkerCounters {
    /// A job ran for `took`.
    pub(crate) fn busy(&self, took: Duration) {
        self.busy_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Adds `delta` to the custom metric `name`. Returns false (and changes nothing) when the
    /// name is empty or too long, the delta is not finite, or there are already
    /// [`MAX_METRICS`] other names.
    pub(crate) fn add(&self, name: &str, delta: f64) -> bool {
        if name.is_empty() || name.len() > MAX_METRIC_NAME || !delta.is_finite() {
            return false;
        }
        let mut custom = lock(&self.custom);
        if !custom.contains_key(name) && custom.len() >= MAX_METRICS {
            return false;
        }
        *custom.entry(name.to_string()).or_insert(0.0) += delta;
        true
    }

    /// The counters now, with `done` and `failed` jobs, and the time since the last snapshot.
    pub(crate) fn snapshot(&self, done: u64, failed: u64) -> (Vec<(String, f64)>, u64) {
        let mut counters = vec![
            ("jobsDone".to_string(), done as f64),
            ("jobsFailed".to_string(), failed as f64),
            (
                "busyMs".to_string(),
                (self.busy_us.load(Ordering::Relaxed) / 1000) as f64,
            ),
        ];
        counters.extend(lock(&self.custom).iter().map(|(k, v)| (k.clone(), *v)));
        let span = {
            let mut last = lock(&self.last_report);
            let span = last.elapsed();
            *last = Instant::now();
            span
        };
        (
            counters,
            u64::try_from(span.as_millis()).unwrap_or(u64::MAX),
        )
    }
}

/// One worker's part of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatsLine {
    /// The worker's peer id and name.
    pub worker: WorkerInfo,
    /// Its counters as last reported.
    pub last: BTreeMap<String, f64>,
    /// How they changed since its report before.
    pub diff: BTreeMap<String, f64>,
    /// Milliseconds its last report covers.
    #[serde(rename = "timeSpan")]
    pub time_span_ms: u64,
}

/// The master's aggregated statistics (okanjo-conductor's `stats` event).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsReport {
    /// Per worker (every worker that reported since the master started; one that left keeps its
    /// last counters, so totals do not drop when workers exit).
    pub raw: Vec<WorkerStatsLine>,
    /// The sum of every worker's last counters.
    pub agg_last: BTreeMap<String, f64>,
    /// How the sums changed since the previous report.
    pub agg_diff: BTreeMap<String, f64>,
    /// The average time span of the reports that came in since the previous report (ms).
    pub avg_time_span_ms: f64,
}

impl StatsReport {
    /// okanjo-conductor's shape as JSON: `{raw: {<worker id>: {name, last, diff, timeSpan}},
    /// agg: {last, diff}, avgTimeSpan}`.
    pub fn to_json(&self) -> String {
        let raw: serde_json::Map<String, serde_json::Value> = self
            .raw
            .iter()
            .map(|line| {
                (
                    line.worker.id.clone(),
                    serde_json::json!({
                        "name": line.worker.name,
                        "last": line.last,
                        "diff": line.diff,
                        "timeSpan": line.time_span_ms,
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "raw": raw,
            "agg": { "last": self.agg_last, "diff": self.agg_diff },
            "avgTimeSpan": self.avg_time_span_ms,
        })
        .to_string()
    }
}

struct Entry {
    worker: WorkerInfo,
    last: BTreeMap<String, f64>,
    diff: BTreeMap<String, f64>,
    span_ms: u64,
    fresh: bool,
}

/// The master's view of its workers' counters.
#[derive(Default)]
pub(crate) struct StatsBoard {
    inner: Mutex<Board>,
}

#[derive(Default)]
struct Board {
    workers: HashMap<String, Entry>,
    agg_prev: BTreeMap<String, f64>,
}

/// Most workers the board remembers (a master serves at most `max_workers` at once; those that
/// left are forgotten oldest-first past this).
const MAX_REMEMBERED: usize = 65_536;

impl StatsBoard {
    /// A worker's report.
    pub(crate) fn record(&self, worker: &WorkerInfo, counters: Vec<(String, f64)>, span_ms: u64) {
        let last: BTreeMap<String, f64> = counters
            .into_iter()
            .filter(|(k, v)| !k.is_empty() && k.len() <= MAX_METRIC_NAME && v.is_finite())
            .take(MAX_METRICS + 3)
            .collect();
        let mut board = lock(&self.inner);
        if board.workers.len() >= MAX_REMEMBERED && !board.workers.contains_key(&worker.id) {
            return;
        }
        let entry = board
            .workers
            .entry(worker.id.clone())
            .or_insert_with(|| Entry {
                worker: worker.clone(),
                last: BTreeMap::new(),
                diff: BTreeMap::new(),
                span_ms: 0,
                fresh: false,
            });
        entry.diff = last
            .iter()
            .map(|(k, v)| (k.clone(), v - entry.last.get(k).copied().unwrap_or(0.0)))
            .collect();
        entry.last = last;
        entry.span_ms = span_ms;
        entry.fresh = true;
    }

    /// A report, when any worker reported since the last one.
    pub(crate) fn report(&self) -> Option<StatsReport> {
        let mut board = lock(&self.inner);
        if !board.workers.values().any(|e| e.fresh) {
            return None;
        }
        let mut agg_last: BTreeMap<String, f64> = BTreeMap::new();
        let mut spans = Vec::new();
        let mut raw = Vec::with_capacity(board.workers.len());
        for entry in board.workers.values_mut() {
            for (k, v) in &entry.last {
                *agg_last.entry(k.clone()).or_insert(0.0) += v;
            }
            if entry.fresh {
                spans.push(entry.span_ms as f64);
            }
            entry.fresh = false;
            raw.push(WorkerStatsLine {
                worker: entry.worker.clone(),
                last: entry.last.clone(),
                diff: entry.diff.clone(),
                time_span_ms: entry.span_ms,
            });
        }
        raw.sort_by(|a, b| {
            a.worker
                .name
                .cmp(&b.worker.name)
                .then(a.worker.id.cmp(&b.worker.id))
        });
        let agg_diff = agg_last
            .iter()
            .map(|(k, v)| (k.clone(), v - board.agg_prev.get(k).copied().unwrap_or(0.0)))
            .collect();
        board.agg_prev = agg_last.clone();
        let avg_time_span_ms = spans.iter().sum::<f64>() / spans.len().max(1) as f64;
        Some(StatsReport {
            raw,
            agg_last,
            agg_diff,
            avg_time_span_ms,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str) -> WorkerInfo {
        WorkerInfo {
            id: id.into(),
            name: format!("w{id}"),
        }
    }

    #[test]
    fn reports_sum_the_workers_last_counters_and_their_changes() {
        let board = StatsBoard::default();
        assert!(board.report().is_none(), "nothing reported yet");
        board.record(
            &worker("1"),
            vec![("jobsDone".into(), 3.0), ("x".into(), 1.0)],
            100,
        );
        board.record(&worker("2"), vec![("jobsDone".into(), 5.0)], 300);
        let first = board.report().expect("a report");
        assert_eq!(first.agg_last["jobsDone"], 8.0);
        assert_eq!(first.agg_diff["jobsDone"], 8.0);
        assert_eq!(first.agg_last["x"], 1.0);
        assert_eq!(first.avg_time_span_ms, 200.0);
        assert!(board.report().is_none(), "no new report since");
        board.record(
            &worker("1"),
            vec![("jobsDone".into(), 7.0), ("x".into(), 4.0)],
            50,
        );
        let second = board.report().expect("a report");
        assert_eq!(
            second.agg_last["jobsDone"], 12.0,
            "worker 2 keeps its last counters"
        );
        assert_eq!(second.agg_diff["jobsDone"], 4.0);
        assert_eq!(second.agg_diff["x"], 3.0);
        assert_eq!(second.avg_time_span_ms, 50.0);
        let one = second
            .raw
            .iter()
            .find(|l| l.worker.id == "1")
            .expect("worker 1");
        assert_eq!(one.diff["jobsDone"], 4.0);
        assert_eq!(one.time_span_ms, 50);
        let json: serde_json::Value = serde_json::from_str(&second.to_json()).expect("json");
        assert_eq!(json["raw"]["1"]["last"]["x"], 4.0);
        assert_eq!(json["agg"]["diff"]["jobsDone"], 4.0);
        assert_eq!(json["avgTimeSpan"], 50.0);
    }

    #[test]
    fn custom_metrics_are_bounded_and_checked() {
        let counters = WorkerCounters::default();
        assert!(counters.add("pages", 2.0));
        assert!(counters.add("pages", 0.5));
        assert!(!counters.add("", 1.0));
        assert!(!counters.add("nan", f64::NAN));
        for i in 0..MAX_METRICS {
            counters.add(&format!("m{i}"), 1.0);
        }
        assert!(!counters.add("one-too-many", 1.0));
        counters.busy(Duration::from_millis(1500));
        let (snapshot, _) = counters.snapshot(4, 1);
        let map: BTreeMap<String, f64> = snapshot.into_iter().collect();
        assert_eq!(map["pages"], 2.5);
        assert_eq!(map["jobsDone"], 4.0);
        assert_eq!(map["jobsFailed"], 1.0);
        assert_eq!(map["busyMs"], 1500.0);
    }
}
