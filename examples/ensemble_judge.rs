//! An ensemble/judge pipeline, the typical compound AI system: several "models" each draft
//! candidates for a question (batched with `vmap`), a judge scores every candidate and keeps the
//! best, and the whole pipeline is itself an operator run over a batch of questions.
//!
//! The "models" here are deterministic stand-ins for LLM calls, so the output is reproducible.
//!
//! Run with `cargo run --example ensemble_judge`.

use std::time::{Duration, Instant};

use xcs::prelude::*;

/// Facts the stand-in models draw on: (keyword, answer).
const FACTS: &[(&str, &str)] = &[
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Kenya", "Nairobi"),
];

fn fact_for(question: &str) -> &'static str {
    FACTS
        .iter()
        .find(|(key, _)| question.contains(key))
        .map_or("I am not sure", |(_, answer)| *answer)
}

/// Answers tersely; wrong on odd seeds (a noisy sampler).
#[xcs::operator]
fn terse_model(question: String, seed: u64) -> String {
    std::thread::sleep(Duration::from_millis(10)); // the model call
    if seed % 2 == 1 {
        "Lyon.".to_owned()
    } else {
        format!("{}.", fact_for(&question))
    }
}

/// Answers at length, always right.
#[xcs::operator]
fn verbose_model(question: String, seed: u64) -> String {
    std::thread::sleep(Duration::from_millis(15));
    format!(
        "Considering the question \"{question}\" carefully (draft {seed}), the answer is {}.",
        fact_for(&question)
    )
}

/// Scores one candidate: right answers first, then shorter ones.
#[xcs::operator]
fn score(question: String, candidate: String) -> i64 {
    let right = candidate.contains(fact_for(&question));
    (if right { 1_000 } else { 0 }) - candidate.len() as i64
}

/// Drafts candidates with every model and lets the judge keep the best one.
#[xcs::operator]
fn ensemble_judge(question: String, samples: u64) -> Result<String, XcsError> {
    let seeds: Vec<u64> = (0..samples).collect();
    let mut candidates =
        vmap(TerseModel).call(TerseModelInputs::batch(question.clone(), seeds.clone())?)?;
    candidates
        .extend(vmap(VerboseModel).call(VerboseModelInputs::batch(question.clone(), seeds)?)?);

    // The judge: one score per candidate, in parallel too.
    let scores = vmap(Score).call(ScoreInputs::batch(question.clone(), candidates.clone())?)?;
    let best = (0..candidates.len())
        .max_by_key(|&i| scores[i])
        .expect("at least one candidate");
    Ok(candidates.swap_remove(best))
}

fn main() -> Result<(), XcsError> {
    let questions = vec![
        "What is the capital of France?".to_owned(),
        "What is the capital of Japan?".to_owned(),
        "What is the capital of Kenya?".to_owned(),
        "What is the capital of Atlantis?".to_owned(),
    ];

    // One question, step by step.
    let q = &questions[0];
    let drafts = vmap(TerseModel).call(TerseModelInputs::batch(q.clone(), vec![0, 1, 2, 3])?)?;
    println!("terse drafts for {q:?}: {drafts:?}");
    let best = EnsembleJudge.call(EnsembleJudgeInputs {
        question: q.clone(),
        samples: 4,
    })?;
    println!("judge's pick: {best:?}\n");

    // The whole pipeline over every question: batches inside a batch. The options of this scope
    // reach the nested `vmap`s too.
    for (label, parallel) in [("parallel", true), ("sequential", false)] {
        let start = Instant::now();
        let answers = execution_options!(use_parallel = parallel, max_workers = 4 => {
            vmap(EnsembleJudge).call(EnsembleJudgeInputs::batch(questions.clone(), 4)?)
        })?;
        println!(
            "{label}: {} questions × 8 candidates in {:.0} ms",
            questions.len(),
            start.elapsed().as_secs_f64() * 1e3
        );
        if parallel {
            for (question, answer) in questions.iter().zip(&answers) {
                println!("  {question:<34} → {answer}");
            }
        }
    }
    Ok(())
}
