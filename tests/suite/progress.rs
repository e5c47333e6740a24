//! `show_progress`, observed through the progress hook: the same events a terminal's
//! bars are drawn from, for sync, async, nested, failing and timed-out batches.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use xcs::{
    Operator, OptionsPatch, ProgressEvent, ProgressOutcome, XcsError, execution_options, pmap,
    vmap, with_options,
};

/// The hook is process-wide: the tests take turns, each with a fresh recording.
fn recording() -> (MutexGuard<'static, ()>, Arc<Mutex<Vec<ProgressEvent>>>) {
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    xcs::set_progress_hook(move |event| sink.lock().unwrap().push(event.clone()));
    (turn, events)
}

struct Check;
impl Operator for Check {
    type Input = u64;
    type Output = u64;
    fn forward(&self, x: u64) -> Result<u64, XcsError> {
        match x {
            13 => Err(XcsError::operator("check", "unlucky")),
            99 => {
                std::thread::sleep(Duration::from_secs(2));
                Ok(x)
            }
            _ => Ok(x),
        }
    }
    fn name(&self) -> &str {
        "check"
    }
}

fn started(events: &[ProgressEvent]) -> Vec<(u64, Option<u64>, String, usize)> {
    events
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Started {
                batch,
                parent,
                operator,
                total,
                ..
            } => Some((*batch, *parent, operator.clone(), *total)),
            _ => None,
        })
        .collect()
}

fn finished(events: &[ProgressEvent], batch: u64) -> Option<(usize, usize, ProgressOutcome)> {
    events.iter().find_map(|e| match e {
        ProgressEvent::Finished {
            batch: b,
            done,
            failed,
            outcome,
            ..
        } if *b == batch => Some((*done, *failed, *outcome)),
        _ => None,
    })
}

#[test]
fn a_sync_batch_reports_every_item_and_finishes() {
    let (_turn, events) = recording();
    let out = execution_options!(show_progress = true => vmap(Check).call((0..10).collect()));
    assert_eq!(out.unwrap().len(), 10);
    let events = events.lock().unwrap().clone();
    let batches = started(&events);
    assert_eq!(batches.len(), 1);
    let (batch, parent, operator, total) = batches[0].clone();
    assert_eq!((parent, operator.as_str(), total), (None, "check", 10));
    let items = events
        .iter()
        .filter(|e| matches!(e, ProgressEvent::Item { batch: b, ok: true, .. } if *b == batch))
        .count();
    assert_eq!(items, 10);
    assert_eq!(finished(&events, batch), Some((10, 0, ProgressOutcome::Ok)));
    // Off: nothing.
    vmap(Check).call((0..10).collect()).unwrap();
    assert_eq!(started(&events).len(), 1);
}

#[test]
fn failures_and_timeouts_finish_the_report() {
    let (_turn, events) = recording();
    let settled = execution_options!(show_progress = true => {
        vmap(Check).call_settled(vec![1, 13, 2])
    });
    assert!(settled[1].is_err());
    let timed_out = with_options(
        &OptionsPatch::new()
            .show_progress(true)
            .timeout(Some(Duration::from_millis(100)))
            .unwrap(),
        || pmap(Check, 2).call(vec![1, 99, 99]),
    );
    assert!(timed_out.unwrap_err().is_timeout());
    let events = events.lock().unwrap().clone();
    let batches = started(&events);
    assert_eq!(batches.len(), 2);
    assert_eq!(
        finished(&events, batches[0].0),
        Some((3, 1, ProgressOutcome::Error))
    );
    let (done, _, outcome) = finished(&events, batches[1].0).unwrap();
    assert_eq!(outcome, ProgressOutcome::Timeout);
    assert!(done < 3);
}

#[test]
fn nested_batches_report_their_parent() {
    struct Row;
    impl Operator for Row {
        type Input = u64;
        type Output = u64;
        fn forward(&self, x: u64) -> Result<u64, XcsError> {
            Ok(vmap(Check).call(vec![x, x + 1])?.iter().sum())
        }
        fn name(&self) -> &str {
            "row"
        }
    }
    let (_turn, events) = recording();
    execution_options!(show_progress = true, max_workers = 2 => vmap(Row).call(vec![0, 10, 20]))
        .unwrap();
    let events = events.lock().unwrap().clone();
    let batches = started(&events);
    let outer = batches.iter().find(|b| b.2 == "row").unwrap().0;
    let inner: Vec<_> = batches.iter().filter(|b| b.2 == "check").collect();
    assert_eq!(inner.len(), 3);
    assert!(inner.iter().all(|b| b.1 == Some(outer)), "{batches:?}");
}

#[cfg(feature = "tokio")]
#[test]
fn async_batches_report_too() {
    use xcs::AsyncOperator;
    struct Wait;
    impl AsyncOperator for Wait {
        type Input = u64;
        type Output = u64;
        async fn forward(&self, x: u64) -> Result<u64, XcsError> {
            tokio::time::sleep(Duration::from_millis(if x == 99 { 5_000 } else { 1 })).await;
            Ok(x)
        }
        fn name(&self) -> &str {
            "wait"
        }
    }
    let (_turn, events) = recording();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        execution_options!(show_progress = true => async {
            vmap(Wait).call((0..5).collect()).await
        })
        .await
        .unwrap();
        let err = execution_options!(show_progress = true, timeout_seconds = 0.05 => async {
            vmap(Wait).call(vec![1, 99]).await
        })
        .await
        .unwrap_err();
        assert!(err.is_timeout());
    });
    let events = events.lock().unwrap().clone();
    let batches = started(&events);
    assert_eq!(batches.len(), 2);
    assert_eq!(
        finished(&events, batches[0].0),
        Some((5, 0, ProgressOutcome::Ok))
    );
    assert_eq!(
        finished(&events, batches[1].0).map(|f| f.2),
        Some(ProgressOutcome::Timeout)
    );
}
