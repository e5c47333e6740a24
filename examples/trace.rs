//! Trace a small generate-then-judge pipeline and open it as a timeline.
//!
//! ```text
//! cargo run --example trace               # writes ./trace.json
//! cargo run --example trace -- /tmp/t.json
//! ```
//!
//! With `trace_execution = true`, every operator call and every `vmap` item is recorded. The
//! example prints the per-operator summary and writes the trace in the Chrome trace-event
//! format: open it at <https://ui.perfetto.dev> ("Open trace file") or in `chrome://tracing` to
//! see one row per worker thread, each item a bar.

use std::path::PathBuf;
use std::time::Duration;

use xcs::{Operator, XcsError, execution_options};

/// Stands in for an LLM call: "answers" a prompt after a latency that varies with the seed.
struct Generate;

impl Operator for Generate {
    type Input = (String, u64);
    type Output = String;

    fn forward(&self, (prompt, seed): (String, u64)) -> Result<String, XcsError> {
        std::thread::sleep(Duration::from_millis(5 + seed * 7 % 20));
        Ok(format!("answer #{seed} to {prompt:?}"))
    }

    fn name(&self) -> &str {
        "generate"
    }
}

/// Stands in for a judge model: scores an answer, quickly.
struct Judge;

impl Operator for Judge {
    type Input = String;
    type Output = u64;

    fn forward(&self, answer: String) -> Result<u64, XcsError> {
        std::thread::sleep(Duration::from_millis(2));
        Ok(answer.bytes().map(u64::from).sum::<u64>() % 100)
    }

    fn name(&self) -> &str {
        "judge"
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("trace.json"), PathBuf::from);

    let prompt = "Why is the sky blue?";
    let best = execution_options!(trace_execution = true, max_workers = 4 => {
        let inputs = (0..8).map(|seed| (prompt.to_owned(), seed)).collect();
        let answers = xcs::vmap(Generate).call(inputs)?;
        let scores = xcs::vmap(Judge).call(answers.clone())?;
        scores
            .iter()
            .zip(answers)
            .max_by_key(|(score, _)| **score)
            .map(|(score, answer)| (*score, answer))
    });

    if let Some((score, answer)) = best {
        println!("best answer (score {score}): {answer}\n");
    }

    let trace = xcs::take_trace();
    println!("{} events recorded\n\n{}\n", trace.len(), trace.summary());

    trace.write_chrome_json(&path)?;
    let path = std::path::absolute(&path)?;
    println!("wrote {}", path.display());
    println!(
        "open it at https://ui.perfetto.dev (\"Open trace file\"), or in chrome://tracing (\"Load\")"
    );
    Ok(())
}
