//! Per-operator statistics of a trace, and the table they print as.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::{Outcome, TraceEvent};

/// Statistics of one operator's events in a [`TraceSummary`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OperatorStats {
    /// The operator's name.
    pub operator: String,
    /// How many events (calls and batch items).
    pub count: usize,
    /// How many of them were batch items.
    pub items: usize,
    /// How many of them were retries (attempts after the first).
    pub retries: usize,
    /// The sum of their durations.
    pub total: Duration,
    /// `total / count`.
    pub mean: Duration,
    /// The longest duration.
    pub max: Duration,
    /// What its events recorded with [`record_usage`](crate::record_usage), added up.
    pub usage: crate::Usage,
    /// How long its events waited for their resource, added up.
    pub resource_wait: Duration,
    /// How many of them were hedges (`hedge_after`): second attempts of a call, counted in
    /// `count` too.
    pub hedges: usize,
    outcomes: [usize; Outcome::ALL.len()],
}

// Costs in a trace are finite (usage is sanitized when recorded): equality is an equivalence.
impl Eq for OperatorStats {}

impl OperatorStats {
    fn new(operator: &str) -> Self {
        OperatorStats {
            operator: operator.to_owned(),
            count: 0,
            items: 0,
            retries: 0,
            total: Duration::ZERO,
            mean: Duration::ZERO,
            max: Duration::ZERO,
            usage: crate::Usage::ZERO,
            resource_wait: Duration::ZERO,
            hedges: 0,
            outcomes: [0; Outcome::ALL.len()],
        }
    }

    /// How many events ended with `outcome`.
    pub fn count_of(&self, outcome: Outcome) -> usize {
        self.outcomes[outcome.slot()]
    }

    /// `(outcome, count)` for every [`Outcome`], zeros included, in [`Outcome::ALL`] order.
    pub fn outcomes(&self) -> impl Iterator<Item = (Outcome, usize)> + '_ {
        Outcome::ALL.into_iter().map(|o| (o, self.count_of(o)))
    }
}

/// Per-operator statistics of a [`Trace`](crate::Trace), ordered by total time, largest first
/// (ties: by name).
///
/// `Display` prints an aligned table, one row per operator:
///
/// ```text
/// operator         count  retries     total      mean       max  ok  error  timeout  cache_hit  panicked  cancelled
/// vmap(generate)       1        0  40.112ms  40.112ms  40.112ms   1      0        0          0         0          0
/// generate            10        2  38.901ms   3.890ms   7.003ms   8      2        0          0         0          0
/// ```
///
/// `count` counts every attempt; `retries` how many of them were attempts after the first
/// (under `max_retries`), so `count - retries` is the number of calls and items (less the
/// [`hedges`](OperatorStats::hedges) of hedged calls, whose losers end `cancelled`). When any
/// event recorded usage ([`record_usage`](crate::record_usage)), two more columns show each
/// operator's `tokens` (input + output) and `cost`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceSummary {
    operators: Vec<OperatorStats>,
}

impl TraceSummary {
    pub(super) fn of(events: &[TraceEvent]) -> Self {
        let mut by_name: HashMap<&str, OperatorStats> = HashMap::new();
        for event in events {
            let stats = by_name
                .entry(&event.operator)
                .or_insert_with(|| OperatorStats::new(&event.operator));
            stats.count += 1;
            stats.items += usize::from(event.is_item());
            stats.retries += usize::from(event.attempt > 1);
            stats.total += event.duration;
            stats.max = stats.max.max(event.duration);
            if let Some(usage) = event.usage {
                stats.usage += usage;
            }
            stats.resource_wait += event.resource_wait;
            stats.hedges += usize::from(event.hedge.is_some_and(|mark| mark.is_hedge));
            stats.outcomes[event.outcome.slot()] += 1;
        }
        let mut operators: Vec<OperatorStats> = by_name.into_values().collect();
        for stats in &mut operators {
            stats.mean = mean(stats.total, stats.count);
        }
        operators.sort_by(|a, b| {
            b.total
                .cmp(&a.total)
                .then_with(|| a.operator.cmp(&b.operator))
        });
        TraceSummary { operators }
    }

    /// The statistics of the operator named `operator`, if it has events.
    pub fn get(&self, operator: &str) -> Option<&OperatorStats> {
        self.operators.iter().find(|s| s.operator == operator)
    }

    /// Iterates over the operators, largest total time first.
    pub fn iter(&self) -> std::slice::Iter<'_, OperatorStats> {
        self.operators.iter()
    }

    /// The number of operators.
    pub fn len(&self) -> usize {
        self.operators.len()
    }

    /// Whether there are no operators (the trace was empty).
    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }
}

impl<'a> IntoIterator for &'a TraceSummary {
    type Item = &'a OperatorStats;
    type IntoIter = std::slice::Iter<'a, OperatorStats>;

    fn into_iter(self) -> Self::IntoIter {
        self.operators.iter()
    }
}

fn mean(total: Duration, count: usize) -> Duration {
    match u128::try_from(count) {
        Ok(n) if n > 0 => {
            let nanos = total.as_nanos() / n;
            Duration::new(
                u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
                (nanos % 1_000_000_000) as u32,
            )
        }
        _ => Duration::ZERO,
    }
}

impl fmt::Display for TraceSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DURATION_WIDTH: usize = 10;
        let name_width = self
            .operators
            .iter()
            .map(|s| s.operator.chars().count())
            .chain(["operator".len()])
            .max()
            .unwrap_or(0);
        write!(
            f,
            "{:<name_width$}  {:>5}  {:>7}  {:>DURATION_WIDTH$}  {:>DURATION_WIDTH$}  \
             {:>DURATION_WIDTH$}",
            "operator", "count", "retries", "total", "mean", "max"
        )?;
        for outcome in Outcome::ALL {
            write!(f, "  {outcome}")?;
        }
        let usage = self.operators.iter().any(|s| !s.usage.is_zero());
        if usage {
            write!(f, "  {:>10}  {:>10}", "tokens", "cost")?;
        }
        for stats in &self.operators {
            write!(
                f,
                "\n{:<name_width$}  {:>5}  {:>7}  {:>DURATION_WIDTH$}  {:>DURATION_WIDTH$}  \
                 {:>DURATION_WIDTH$}",
                stats.operator,
                stats.count,
                stats.retries,
                HumanDuration(stats.total),
                HumanDuration(stats.mean),
                HumanDuration(stats.max),
            )?;
            for (outcome, count) in stats.outcomes() {
                let width = outcome.as_str().len();
                write!(f, "  {count:>width$}")?;
            }
            if usage {
                write!(
                    f,
                    "  {:>10}  {:>10.4}",
                    stats.usage.tokens(),
                    stats.usage.cost
                )?;
            }
        }
        Ok(())
    }
}

/// A duration with three decimals in the largest unit that keeps it ≥ 1: `1.250s`, `40.112ms`,
/// `7.003µs`, `830ns`.
struct HumanDuration(Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        let text = if nanos >= 1_000_000_000 {
            format!("{:.3}s", self.0.as_secs_f64())
        } else if nanos >= 1_000_000 {
            format!("{:.3}ms", nanos as f64 / 1e6)
        } else if nanos >= 1_000 {
            format!("{:.3}µs", nanos as f64 / 1e3)
        } else {
            format!("{nanos}ns")
        };
        f.pad(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Trace;
    use super::super::test_support::event;
    use super::*;

    #[test]
    fn usage_adds_up_per_operator_and_shows_as_columns() {
        let mut a = event("use_a", None, 10, Outcome::Ok);
        a.usage = Some(crate::Usage {
            input_tokens: 100,
            output_tokens: 20,
            cost: 0.5,
        });
        a.resource_wait = Duration::from_millis(3);
        let mut b = event("use_a", None, 10, Outcome::Ok);
        b.usage = Some(crate::Usage {
            input_tokens: 1,
            output_tokens: 2,
            cost: 0.25,
        });
        let plain = Trace {
            events: vec![event("use_b", None, 1, Outcome::Ok)],
            dropped: 0,
        };
        assert!(!plain.summary().to_string().contains("tokens"));
        let trace = Trace {
            events: vec![a, b, event("use_b", None, 1, Outcome::Ok)],
            dropped: 0,
        };
        let summary = trace.summary();
        let stats = summary.get("use_a").unwrap();
        assert_eq!(stats.usage.tokens(), 123);
        assert_eq!(stats.usage.cost, 0.75);
        assert_eq!(stats.resource_wait, Duration::from_millis(3));
        let table = summary.to_string();
        assert!(
            table
                .lines()
                .next()
                .unwrap()
                .ends_with("tokens        cost"),
            "{table}"
        );
        assert!(table.contains("       123      0.7500"), "{table}");
    }

    #[test]
    fn summary_numbers() {
        let trace = Trace {
            events: vec![
                event("sum_a", Some(0), 10, Outcome::Ok),
                event("sum_a", Some(1), 30, Outcome::Error),
                event("sum_a", None, 20, Outcome::Ok),
                event("sum_b", None, 100, Outcome::CacheHit),
                event("sum_c", None, 1, Outcome::Timeout),
            ],
            dropped: 0,
        };
        let summary = trace.summary();
        let order: Vec<&str> = summary.iter().map(|s| s.operator.as_str()).collect();
        assert_eq!(order, ["sum_b", "sum_a", "sum_c"]);
        assert_eq!(summary.len(), 3);
        let a = summary.get("sum_a").unwrap();
        assert_eq!((a.count, a.items), (3, 2));
        assert_eq!(a.total, Duration::from_millis(60));
        assert_eq!(a.mean, Duration::from_millis(20));
        assert_eq!(a.max, Duration::from_millis(30));
        assert_eq!(a.count_of(Outcome::Ok), 2);
        assert_eq!(a.count_of(Outcome::Error), 1);
        assert_eq!(a.count_of(Outcome::Panicked), 0);
        assert_eq!(summary.get("sum_b").unwrap().count_of(Outcome::CacheHit), 1);
        assert_eq!(summary.get("sum_c").unwrap().count_of(Outcome::Timeout), 1);
        assert!(summary.get("nope").is_none());
        assert!(Trace::default().summary().is_empty());

        let table = summary.to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("operator"));
        assert!(lines[0].contains("  count  retries  "), "{table}");
        assert!(lines[0].ends_with("ok  error  timeout  cache_hit  panicked  cancelled"));
        assert!(lines[1].starts_with("sum_b   "));
        assert!(lines[2].contains("20.000ms") && lines[2].contains("60.000ms"));
        // Aligned: every row as wide as the header (chars, `µ` included).
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{table}");
    }

    #[test]
    fn human_durations() {
        let show = |d| HumanDuration(d).to_string();
        assert_eq!(show(Duration::from_nanos(830)), "830ns");
        assert_eq!(show(Duration::from_nanos(7_003)), "7.003µs");
        assert_eq!(show(Duration::from_micros(40_112)), "40.112ms");
        assert_eq!(show(Duration::from_millis(1_250)), "1.250s");
        assert_eq!(
            mean(Duration::from_secs(3), 2),
            Duration::from_millis(1_500)
        );
        assert_eq!(mean(Duration::from_secs(3), 0), Duration::ZERO);
    }
}
