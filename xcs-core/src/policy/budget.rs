//! Budgets: `token_budget` and `cost_budget`, the most a scope may spend.
//!
//! A scope that sets a budget opens a [`Budget`] account, a child of the budget in force where
//! it is opened (or of the global budget); every call inside it — on any thread, task or batch
//! item: the account rides in the call context, which the ambient carries — is admitted against
//! the whole chain, so a nested scope can only narrow what an outer one allows. (Opening and
//! entering budget scopes is in `deadline`, beside the call context; this module holds the
//! accounts and the rule.)
//!
//! The rule, written once here and driven by the call plan:
//!
//! - **Admission**: a call is admitted only if, at every level of the chain, its estimate fits in
//!   what remains (limit − spent − the estimates reserved by calls in flight), and something
//!   remains at all; otherwise it is refused with [`XcsError::BudgetExceeded`] and never runs.
//!   Admission reserves the estimate at every level.
//! - **Settling**: when the call ends, its reservation is released and what it recorded is
//!   spent instead (a call that recorded nothing spends its estimate).
//!
//! So spent ≤ budget + the overrun of calls that recorded more than their estimate; with
//! estimates that bound usage, a budget is never exceeded, however many calls run at once.
//!
//! Locks are taken innermost first, up the chain, and never the other way, so admission cannot
//! deadlock; each level's lock is held only for arithmetic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::XcsError;
use crate::usage::Usage;

/// One scope's budget account. See the module docs.
#[derive(Debug)]
pub(crate) struct Budget {
    tokens: Option<u64>,
    cost: Option<f64>,
    account: Mutex<Account>,
    parent: Option<Arc<Budget>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Account {
    spent: Usage,
    reserved: Usage,
}

/// Why a call was refused: the budget it did not fit in.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Refusal {
    pub(crate) budget: &'static str,
    pub(crate) limit: f64,
    pub(crate) spent: f64,
    pub(crate) reserved: f64,
    pub(crate) estimate: f64,
}

impl Refusal {
    /// The error a refused call of `operator` returns.
    pub(crate) fn into_error(self, operator: &str, index: Option<usize>) -> XcsError {
        XcsError::BudgetExceeded {
            operator: operator.to_owned(),
            index,
            budget: self.budget,
            limit: self.limit,
            spent: self.spent,
        }
    }
}

impl Budget {
    /// A budget of `tokens` and `cost` (either may be unlimited) inside `parent`.
    pub(crate) fn new(
        tokens: Option<u64>,
        cost: Option<f64>,
        parent: Option<Arc<Budget>>,
    ) -> Arc<Budget> {
        Arc::new(Budget {
            tokens,
            cost,
            account: Mutex::new(Account::default()),
            parent,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Account> {
        self.account.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The budget this one narrows, if any.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn parent(&self) -> Option<&Arc<Budget>> {
        self.parent.as_ref()
    }

    /// What this budget has spent so far (calls that have ended).
    pub(crate) fn spent(&self) -> Usage {
        self.lock().spent
    }

    /// Admits a call estimated to use `estimate`, reserving it at every level; see the module
    /// docs.
    pub(crate) fn admit(self: &Arc<Self>, estimate: Usage) -> Result<Reservation, Refusal> {
        let estimate = estimate.sanitized();
        // Innermost first, up the chain (see the module docs for why this cannot deadlock).
        let mut levels: Vec<(&Budget, MutexGuard<'_, Account>)> = Vec::new();
        let mut level = Some(&**self);
        while let Some(budget) = level {
            let account = budget.lock();
            budget.check(&account, estimate)?;
            levels.push((budget, account));
            level = budget.parent.as_deref();
        }
        for (_, account) in &mut levels {
            account.reserved += estimate;
        }
        drop(levels);
        Ok(Reservation {
            budget: Some(Arc::clone(self)),
            estimate,
        })
    }

    fn check(&self, account: &Account, estimate: Usage) -> Result<(), Refusal> {
        if let Some(limit) = self.tokens {
            let spent = account.spent.tokens();
            let reserved = account.reserved.tokens();
            let taken = spent.saturating_add(reserved);
            if taken >= limit || estimate.tokens() > limit - taken {
                return Err(Refusal {
                    budget: "token_budget",
                    limit: limit as f64,
                    spent: spent as f64,
                    reserved: reserved as f64,
                    estimate: estimate.tokens() as f64,
                });
            }
        }
        if let Some(limit) = self.cost {
            let taken = account.spent.cost + account.reserved.cost;
            if taken >= limit || estimate.cost > limit - taken {
                return Err(Refusal {
                    budget: "cost_budget",
                    limit,
                    spent: account.spent.cost,
                    reserved: account.reserved.cost,
                    estimate: estimate.cost,
                });
            }
        }
        Ok(())
    }

    /// Releases `estimate` and spends `used` at every level.
    fn charge(&self, estimate: Usage, used: Usage) {
        let mut level = Some(self);
        while let Some(budget) = level {
            let mut account = budget.lock();
            account.reserved = Usage {
                input_tokens: account
                    .reserved
                    .input_tokens
                    .saturating_sub(estimate.input_tokens),
                output_tokens: account
                    .reserved
                    .output_tokens
                    .saturating_sub(estimate.output_tokens),
                cost: (account.reserved.cost - estimate.cost).max(0.0),
            };
            account.spent += used;
            drop(account);
            level = budget.parent.as_deref();
        }
    }
}

/// An admitted call's reservation; settled when the call ends. Dropped unsettled (a cancelled
/// future, a caller that gave up), it spends its estimate.
#[derive(Debug)]
#[must_use = "a reservation is settled when the call ends"]
pub(crate) struct Reservation {
    budget: Option<Arc<Budget>>,
    estimate: Usage,
}

impl Reservation {
    /// The call ended having recorded `recorded` (`None`: nothing, so its estimate is spent).
    pub(crate) fn settle(mut self, recorded: Option<Usage>) {
        if let Some(budget) = self.budget.take() {
            budget.charge(
                self.estimate,
                recorded.map_or(self.estimate, Usage::sanitized),
            );
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.charge(self.estimate, self.estimate);
        }
    }
}

/// The process-wide budget, made when a global `token_budget` or `cost_budget` is set.
static GLOBAL: Mutex<Option<Arc<Budget>>> = Mutex::new(None);

/// Whether calls under `options` are admitted against a budget.
#[inline]
pub(crate) fn applies(options: &crate::options::ExecutionOptions) -> bool {
    options.token_budget.is_some() || options.cost_budget.is_some()
}

/// Whether a global budget is set (read before taking [`GLOBAL`]'s lock).
static GLOBAL_SET: AtomicBool = AtomicBool::new(false);

/// The global budget, if one is set.
#[inline]
pub(crate) fn global() -> Option<Arc<Budget>> {
    if !GLOBAL_SET.load(Ordering::Acquire) {
        return None;
    }
    GLOBAL
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The budget a scope with `patch` opens: `Some((tokens, cost))` when the patch sets either.
#[inline]
pub(crate) fn opened_by(
    patch: &crate::options::OptionsPatch,
) -> Option<(Option<u64>, Option<f64>)> {
    match patch.budgets() {
        (None | Some(None), None | Some(None)) => None,
        (tokens, cost) => Some((tokens.flatten(), cost.flatten())),
    }
}

/// Keeps the global budget in step with the global options (after they changed).
pub(crate) fn set_global_from(options: &crate::options::ExecutionOptions) {
    set_global(options.token_budget, options.cost_budget);
}

/// Replaces the global budget: a fresh account when the limits changed, none without limits.
pub(crate) fn set_global(tokens: Option<u64>, cost: Option<f64>) {
    let mut global = GLOBAL.lock().unwrap_or_else(PoisonError::into_inner);
    let same = global
        .as_ref()
        .is_some_and(|budget| budget.tokens == tokens && budget.cost == cost);
    if !same {
        *global = (tokens.is_some() || cost.is_some()).then(|| Budget::new(tokens, cost, None));
        GLOBAL_SET.store(global.is_some(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(n: u64) -> Usage {
        Usage {
            input_tokens: n,
            ..Usage::ZERO
        }
    }

    #[test]
    fn estimates_that_fit_are_admitted_and_reserved() {
        let budget = Budget::new(Some(100), None, None);
        let a = budget.admit(tokens(60)).unwrap();
        // 60 reserved: 50 more does not fit, 40 does.
        let refusal = budget.admit(tokens(50)).unwrap_err();
        assert_eq!(refusal.budget, "token_budget");
        assert_eq!(refusal.reserved, 60.0);
        assert_eq!(refusal.estimate, 50.0);
        let b = budget.admit(tokens(40)).unwrap();
        // Nothing remains: even an estimate of zero is refused.
        assert!(budget.admit(Usage::ZERO).is_err());
        a.settle(Some(tokens(10)));
        b.settle(None);
        assert_eq!(budget.spent().tokens(), 50);
        assert!(budget.admit(tokens(50)).is_ok());
    }

    #[test]
    fn what_a_call_records_replaces_its_estimate() {
        let budget = Budget::new(None, Some(1.0), None);
        let r = budget
            .admit(Usage {
                cost: 0.5,
                ..Usage::ZERO
            })
            .unwrap();
        r.settle(Some(Usage {
            cost: 0.75,
            ..Usage::ZERO
        }));
        assert_eq!(budget.spent().cost, 0.75);
        let refusal = budget
            .admit(Usage {
                cost: 0.5,
                ..Usage::ZERO
            })
            .unwrap_err();
        assert_eq!(refusal.budget, "cost_budget");
        assert_eq!(refusal.spent, 0.75);
    }

    #[test]
    fn a_dropped_reservation_spends_its_estimate() {
        let budget = Budget::new(Some(10), None, None);
        drop(budget.admit(tokens(4)).unwrap());
        assert_eq!(budget.spent().tokens(), 4);
        assert!(budget.admit(tokens(6)).is_ok());
    }

    #[test]
    fn nested_budgets_only_narrow() {
        let outer = Budget::new(Some(100), None, None);
        let inner = Budget::new(Some(1_000), None, Some(Arc::clone(&outer)));
        // The inner limit is larger, but the outer one holds.
        assert_eq!(inner.admit(tokens(150)).unwrap_err().limit, 100.0);
        inner.admit(tokens(80)).unwrap().settle(None);
        assert_eq!(outer.spent().tokens(), 80);
        assert_eq!(inner.spent().tokens(), 80);
        // A sibling scope shares the outer budget.
        let sibling = Budget::new(Some(50), None, Some(Arc::clone(&outer)));
        assert!(sibling.admit(tokens(30)).is_err());
        assert!(sibling.admit(tokens(20)).is_ok());
    }

    #[test]
    fn hostile_costs_do_not_corrupt_an_account() {
        let budget = Budget::new(None, Some(1.0), None);
        let r = budget.admit(Usage::ZERO).unwrap();
        r.settle(Some(Usage {
            cost: f64::NAN,
            ..Usage::ZERO
        }));
        let r = budget.admit(Usage::ZERO).unwrap();
        r.settle(Some(Usage {
            cost: -5.0,
            ..Usage::ZERO
        }));
        assert_eq!(budget.spent().cost, 0.0);
    }
}
