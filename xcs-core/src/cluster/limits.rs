//! What callers' chunks may take of a worker.

use std::time::Duration;

/// What callers' chunks may take of a worker ([`Registry::limits`](crate::cluster::Registry::limits)).
///
/// ```
/// use std::time::Duration;
/// use xcs::cluster::WorkerLimits;
///
/// let limits = WorkerLimits::new()
///     .max_queued_chunks(16)
///     .max_queued_bytes(32 << 20)
///     .max_chunk_time(Duration::from_secs(60));
/// assert_eq!(limits.queued_chunks(), 16);
/// ```
#[derive(Clone, Debug)]
pub struct WorkerLimits {
    pub(super) chunks: usize,
    pub(super) bytes: usize,
    pub(super) time: Duration,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        WorkerLimits {
            chunks: 8 * crate::pool::cpu_count().max(1),
            bytes: 64 << 20,
            time: Duration::from_secs(600),
        }
    }
}

impl WorkerLimits {
    /// The defaults: 8 chunks per CPU held at once (running or waiting), 64 MiB of them, and 10
    /// minutes per chunk.
    pub fn new() -> Self {
        WorkerLimits::default()
    }

    /// How many chunks the worker holds at once, running or waiting for a CPU (at least 1);
    /// one more is answered `Busy`.
    #[must_use]
    pub fn max_queued_chunks(mut self, chunks: usize) -> Self {
        self.chunks = chunks.max(1);
        self
    }

    /// How many bytes of requests the worker holds at once (a chunk larger than this is still
    /// taken when the worker holds nothing else).
    #[must_use]
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.bytes = bytes;
        self
    }

    /// The longest a chunk may run (default 10 minutes): its deadline when the request has none,
    /// and the cap of the one it has.
    #[must_use]
    pub fn max_chunk_time(mut self, time: Duration) -> Self {
        self.time = time;
        self
    }

    /// See [`max_queued_chunks`](WorkerLimits::max_queued_chunks).
    pub fn queued_chunks(&self) -> usize {
        self.chunks
    }

    /// See [`max_queued_bytes`](WorkerLimits::max_queued_bytes).
    pub fn queued_bytes(&self) -> usize {
        self.bytes
    }

    /// See [`max_chunk_time`](WorkerLimits::max_chunk_time).
    pub fn chunk_time(&self) -> Duration {
        self.time
    }
}
