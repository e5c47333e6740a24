//! The Chrome trace-event form of a [`Trace`], for Perfetto and `chrome://tracing`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::Trace;

impl Trace {
    /// The trace in the [Chrome trace-event format], which <https://ui.perfetto.dev> ("Open trace
    /// file") and `chrome://tracing` open as a timeline.
    ///
    /// The object form, `{"traceEvents": […], "displayTimeUnit": "ms"}`: one complete event
    /// (`"ph": "X"`) per recorded event, with `name` = [`TraceEvent::label`](crate::TraceEvent::label), `cat` = `"xcs"`,
    /// `ts`/`dur` in microseconds, `pid` 1, `tid` = [`TraceEvent::thread_id`](crate::TraceEvent::thread_id) and `args` holding
    /// the operator, index, outcome, id, parent, depth, attempt, (for a fallback) the operator
    /// that answered and, for the attempts of a hedged call, `hedge` (`"first"` or `"hedge"`)
    /// and `won`; plus one `thread_name` metadata event
    /// (`"ph": "M"`) per thread so the timeline's rows carry the thread names. `otherData`
    /// records the number of [dropped](Trace::dropped) events.
    ///
    /// [Chrome trace-event format]: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
    pub fn to_chrome_json(&self) -> String {
        self.chrome_value().to_string()
    }

    /// Writes [`to_chrome_json`](Trace::to_chrome_json) to `path`, creating or truncating it.
    ///
    /// # Errors
    /// Any error creating or writing the file.
    pub fn write_chrome_json(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_chrome_json())
    }

    fn chrome_value(&self) -> Value {
        let mut threads: BTreeMap<u64, &str> = BTreeMap::new();
        for event in &self.events {
            threads.entry(event.thread_id).or_insert(&event.thread);
        }
        let mut trace_events = Vec::with_capacity(self.events.len() + threads.len() + 1);
        trace_events.push(json!({
            "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
            "args": { "name": "xcs" },
        }));
        for (tid, name) in &threads {
            trace_events.push(json!({
                "name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                "args": { "name": name },
            }));
        }
        for event in &self.events {
            trace_events.push(json!({
                "name": event.label(),
                "cat": "xcs",
                "ph": "X",
                "ts": micros(event.start),
                "dur": micros(event.duration),
                "pid": 1,
                "tid": event.thread_id,
                "args": {
                    "operator": event.operator,
                    "index": event.index,
                    "outcome": event.outcome.as_str(),
                    "id": event.id,
                    "parent": event.parent,
                    "depth": event.depth,
                    "attempt": event.attempt,
                    "answered_by": event.answered_by,
                    "hedge": event.hedge.map(|mark| if mark.is_hedge { "hedge" } else { "first" }),
                    "won": event.hedge.map(|mark| mark.won),
                },
            }));
        }
        json!({
            "traceEvents": trace_events,
            "displayTimeUnit": "ms",
            "otherData": { "producer": "xcs", "dropped": self.dropped },
        })
    }
}

fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::super::record::begin;
    use super::super::test_support::{lock, mine};
    use super::super::{Outcome, take_trace};
    use super::*;

    #[test]
    fn chrome_json_parses_back() {
        let _guard = lock();
        let outer = begin("chrome_vmap", None);
        begin("chrome \"quoted\"", Some(2)).finish(Outcome::Error);
        outer.finish(Outcome::Ok);
        std::thread::Builder::new()
            .name("chrome-worker".into())
            .spawn(|| begin("chrome_other", Some(0)).finish(Outcome::Ok))
            .unwrap()
            .join()
            .unwrap();
        let events = mine(take_trace(), "chrome");
        let trace = Trace { events, dropped: 3 };

        let value: Value = serde_json::from_str(&trace.to_chrome_json()).unwrap();
        assert_eq!(value["displayTimeUnit"], "ms");
        assert_eq!(value["otherData"]["dropped"], 3);
        let all = value["traceEvents"].as_array().unwrap();
        let complete: Vec<&Value> = all.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(complete.len(), 3);
        let item = complete
            .iter()
            .find(|e| e["name"] == "chrome \"quoted\"[2]")
            .unwrap();
        assert_eq!(item["cat"], "xcs");
        assert_eq!(item["pid"], 1);
        assert_eq!(item["args"]["index"], 2);
        assert_eq!(item["args"]["outcome"], "error");
        assert_eq!(item["args"]["depth"], 1);
        assert!(item["ts"].as_f64().unwrap() >= 0.0);
        assert!(item["dur"].as_f64().unwrap() >= 0.0);
        let vmap = complete
            .iter()
            .find(|e| e["name"] == "chrome_vmap")
            .unwrap();
        assert_eq!(vmap["args"]["index"], Value::Null);
        assert_eq!(item["args"]["parent"], vmap["args"]["id"]);
        assert_eq!(item["tid"], vmap["tid"]);

        let names: Vec<(&Value, &Value)> = all
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
            .map(|e| (&e["tid"], &e["args"]["name"]))
            .collect();
        assert_eq!(names.len(), 2, "one per thread: {names:?}");
        let other = complete
            .iter()
            .find(|e| e["name"] == "chrome_other[0]")
            .unwrap();
        assert!(names.contains(&(&other["tid"], &Value::from("chrome-worker"))));

        let path = std::env::temp_dir().join(format!("xcs-trace-{}.json", std::process::id()));
        trace.write_chrome_json(&path).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(written, trace.to_chrome_json());
    }
}
