//! Events recorded in another process (a cluster worker) merged into this one's trace.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::record::{EPOCH, NEXT_EVENT_ID, Parent, buffer};
use super::{TRACE_CAPACITY, TraceEvent};

/// A parent for events recorded here on behalf of another process (a cluster worker running a
/// caller's chunk): it is no event itself; [`take_under`] later takes what was recorded under it.
#[cfg(feature = "nats")]
pub(crate) fn detached_root() -> Parent {
    Parent {
        id: NEXT_EVENT_ID.fetch_add(1, Ordering::Relaxed),
        child_depth: 0,
        span: tracing::Span::none(),
    }
}

/// The id of a [`detached_root`].
#[cfg(feature = "nats")]
pub(crate) fn root_id(root: &Parent) -> u64 {
    root.id
}

/// Removes from the in-memory trace and returns every event recorded under `root` (at any
/// depth), in the order they finished.
#[cfg(feature = "nats")]
pub(crate) fn take_under(root: u64) -> Vec<TraceEvent> {
    let mut buffer = buffer();
    let parents: HashMap<u64, Option<u64>> =
        buffer.events.iter().map(|e| (e.id, e.parent)).collect();
    let under = |mut parent: Option<u64>| {
        while let Some(id) = parent {
            if id == root {
                return true;
            }
            parent = parents.get(&id).copied().flatten();
        }
        false
    };
    let (taken, kept): (Vec<TraceEvent>, Vec<TraceEvent>) =
        buffer.events.drain(..).partition(|e| under(e.parent));
    buffer.events = kept.into();
    taken
}

/// Records events another process recorded under its root `root` as if they had happened here
/// under `parent`: fresh ids, parents and depths rewritten, `start` already on this process's
/// clock.
#[cfg(feature = "nats")]
pub(crate) fn adopt_remote(parent: Option<&Parent>, root: u64, events: Vec<TraceEvent>) {
    let ids: HashMap<u64, u64> = events
        .iter()
        .map(|e| (e.id, NEXT_EVENT_ID.fetch_add(1, Ordering::Relaxed)))
        .collect();
    let depth = parent.map_or(0, |p| p.child_depth);
    let mut buffer = buffer();
    for mut event in events {
        event.id = ids[&event.id];
        event.parent = match event.parent {
            Some(id) if id == root => parent.map(|p| p.id),
            Some(id) => ids.get(&id).copied(),
            None => parent.map(|p| p.id),
        };
        event.depth += depth;
        buffer.push(event, TRACE_CAPACITY);
    }
}

/// The time since this process's trace epoch (what [`TraceEvent::start`] is measured from).
#[cfg(feature = "nats")]
pub(crate) fn since_epoch() -> Duration {
    EPOCH.get_or_init(Instant::now).elapsed()
}
