//! Batched and broadcast arguments, for building batches of operator inputs.
//!
//! `GenerateInputs::batch(prompts, 7)` should read like the Python `inputs={"prompt": prompts,
//! "seed": 7}`: a `Vec` is a batch axis, a plain value is broadcast to every item. [`Axis`] is
//! that distinction as a type, so `batch` can take either through `impl Into<Axis<T>>`.

use crate::error::XcsError;

/// One argument of a batch: either a value broadcast (cloned) into every item, or one value per
/// item.
///
/// ```
/// use xcs::Axis;
/// let batched: Axis<u64> = vec![1, 2, 3].into();
/// assert_eq!(batched.batch_len(), Some(3));
/// let broadcast: Axis<u64> = 7.into();
/// assert_eq!(broadcast.batch_len(), None);
/// assert_eq!(broadcast.into_items(2, "seed")?, vec![7, 7]);
/// # Ok::<(), xcs::XcsError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Axis<T>(Repr<T>);

#[derive(Clone, Debug)]
enum Repr<T> {
    Broadcast(T, fn(&T) -> T),
    Batched(Vec<T>),
}

impl<T> Axis<T> {
    /// One value per batch item.
    pub fn batched(values: Vec<T>) -> Self {
        Axis(Repr::Batched(values))
    }

    /// The same value in every batch item.
    pub fn broadcast(value: T) -> Self
    where
        T: Clone,
    {
        Axis(Repr::Broadcast(value, T::clone))
    }

    /// The number of items if batched, `None` if broadcast.
    pub fn batch_len(&self) -> Option<usize> {
        match &self.0 {
            Repr::Broadcast(..) => None,
            Repr::Batched(values) => Some(values.len()),
        }
    }

    /// The values of `len` batch items: the batched values, or `len` copies of the broadcast
    /// value. `argument` names the argument in the error.
    ///
    /// # Errors
    /// [`XcsError::BatchSizeMismatch`] if batched with a length other than `len`.
    pub fn into_items(self, len: usize, argument: &str) -> Result<Vec<T>, XcsError> {
        match self.0 {
            Repr::Batched(values) if values.len() == len => Ok(values),
            Repr::Batched(values) => Err(XcsError::BatchSizeMismatch {
                first: "the batch".to_owned(),
                first_len: len,
                other: argument.to_owned(),
                other_len: values.len(),
            }),
            Repr::Broadcast(value, clone) => {
                let mut items = Vec::with_capacity(len);
                if len > 0 {
                    items.extend((1..len).map(|_| clone(&value)));
                    items.push(value);
                }
                Ok(items)
            }
        }
    }
}

impl<T: Clone> From<T> for Axis<T> {
    fn from(value: T) -> Self {
        Axis::broadcast(value)
    }
}

impl<T> From<Vec<T>> for Axis<T> {
    fn from(values: Vec<T>) -> Self {
        Axis::batched(values)
    }
}

impl From<&str> for Axis<String> {
    fn from(value: &str) -> Self {
        Axis::broadcast(value.to_owned())
    }
}

impl From<Vec<&str>> for Axis<String> {
    fn from(values: Vec<&str>) -> Self {
        Axis::batched(values.into_iter().map(str::to_owned).collect())
    }
}

impl<T, const N: usize> From<[T; N]> for Axis<T> {
    fn from(values: [T; N]) -> Self {
        Axis::batched(values.into())
    }
}

/// The batch length of a call's arguments: the common length of the batched ones, or 1 if all
/// are broadcast.
///
/// # Errors
/// [`XcsError::BatchSizeMismatch`] naming the first batched argument and the first one whose
/// length differs.
pub fn batch_len(arguments: &[(&str, Option<usize>)]) -> Result<usize, XcsError> {
    let mut first: Option<(&str, usize)> = None;
    for &(name, len) in arguments {
        let Some(len) = len else { continue };
        match first {
            None => first = Some((name, len)),
            Some((first_name, first_len)) if first_len != len => {
                return Err(XcsError::BatchSizeMismatch {
                    first: first_name.to_owned(),
                    first_len,
                    other: name.to_owned(),
                    other_len: len,
                });
            }
            Some(_) => {}
        }
    }
    Ok(first.map_or(1, |(_, len)| len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(batch_len(&[("a", None), ("b", None)]).unwrap(), 1);
        assert_eq!(batch_len(&[("a", Some(3)), ("b", None)]).unwrap(), 3);
        assert_eq!(batch_len(&[("a", Some(0))]).unwrap(), 0);
        let err = batch_len(&[("a", Some(3)), ("b", None), ("c", Some(2))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "batched arguments have different lengths: `a` has 3 items but `c` has 2 items"
        );
        let err = batch_len(&[("a", Some(1)), ("b", Some(2))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "batched arguments have different lengths: `a` has 1 item but `b` has 2 items"
        );
    }

    #[test]
    fn broadcast_and_batch() {
        let a: Axis<String> = "x".into();
        assert_eq!(a.into_items(3, "a").unwrap(), vec!["x", "x", "x"]);
        let b: Axis<String> = vec!["p", "q"].into();
        assert_eq!(b.into_items(2, "b").unwrap(), vec!["p", "q"]);
        let c: Axis<u8> = [1u8, 2].into();
        assert!(c.into_items(3, "c").is_err());
        let empty: Axis<u8> = 5.into();
        assert!(empty.into_items(0, "e").unwrap().is_empty());
    }
}
