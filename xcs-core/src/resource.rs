//! PLACEHOLDER (replaced by the h-res branch at merge): the interface the call plan uses.
#![allow(dead_code, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::usage::Usage;

pub(crate) struct Resource;

pub(crate) fn resource(_name: &str) -> Arc<Resource> {
    Arc::new(Resource)
}

pub(crate) enum Admission {
    Admitted { permit: Permit, start: Instant },
    Full(Listener),
    TooLate,
}

pub(crate) struct Listener;

impl Listener {
    pub(crate) fn wait(self, _deadline: Option<Instant>) {}
}

impl std::future::Future for Listener {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::task::Poll::Ready(())
    }
}

impl Resource {
    pub(crate) fn admit(
        self: &Arc<Self>,
        _tokens: u64,
        now: Instant,
        _deadline: Option<Instant>,
    ) -> Admission {
        Admission::Admitted {
            permit: Permit,
            start: now,
        }
    }
}

pub(crate) struct Permit;

impl Permit {
    pub(crate) fn confirm(&self, _now: Instant) -> Option<Instant> {
        None
    }
    pub(crate) fn rate_limited(&self, _wait: Duration, _now: Instant) {}
    pub(crate) fn settle(self, _actual: Option<Usage>) {}
}
