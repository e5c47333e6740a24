//! STUB
use crate::error::XcsError;
use crate::operator::Operator;
use std::sync::Arc;

/// vmap
pub struct VMap<O> {
    op: Arc<O>,
    name: String,
}
/// pmap
pub struct PMap<O> {
    op: Arc<O>,
    name: String,
    workers: usize,
}
/// vmap
pub fn vmap<O: Operator>(op: O) -> VMap<O> {
    let name = format!("vmap({})", op.name());
    VMap {
        op: Arc::new(op),
        name,
    }
}
/// pmap
pub fn pmap<O: Operator>(op: O, num_workers: usize) -> PMap<O> {
    let name = format!("pmap({})", op.name());
    PMap {
        op: Arc::new(op),
        name,
        workers: num_workers,
    }
}
impl<O: Operator> Operator for VMap<O> {
    type Input = Vec<O::Input>;
    type Output = Vec<O::Output>;
    fn forward(&self, input: Self::Input) -> Result<Self::Output, XcsError> {
        input.into_iter().map(|i| self.op.call(i)).collect()
    }
    fn name(&self) -> &str {
        &self.name
    }
}
impl<O: Operator> Operator for PMap<O> {
    type Input = Vec<O::Input>;
    type Output = Vec<O::Output>;
    fn forward(&self, input: Self::Input) -> Result<Self::Output, XcsError> {
        let _ = self.workers;
        input.into_iter().map(|i| self.op.call(i)).collect()
    }
    fn name(&self) -> &str {
        &self.name
    }
}
