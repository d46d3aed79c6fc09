//! The worker pool of repository operations: items handed out one at a time to `workers`
//! threads, stopped at the first failure or when cancelled.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::error::{Result, StorageError};

/// Runs `work` on every item on `workers` threads. The first failure stops the handing out of
/// items (those under way finish) and is returned; so is [`StorageError::Cancelled`] when
/// `cancel` was set.
///
/// # Errors
/// The first failure, or the cancellation.
pub(crate) fn for_each<T, F>(items: Vec<T>, workers: usize, cancel: Option<&AtomicBool>, work: F) -> Result<()>
where
    T: Send,
    F: Fn(T) -> Result<()> + Sync,
{
    let next = Mutex::new(items.into_iter());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<StorageError>> = Mutex::new(None);
    let stopped = || failed.load(Ordering::SeqCst) || cancel.is_some_and(|c| c.load(Ordering::SeqCst));
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| loop {
                if stopped() {
                    return;
                }
                let Some(item) = next.lock().next() else { return };
                if let Err(e) = work(item) {
                    failed.store(true, Ordering::SeqCst);
                    first_error.lock().get_or_insert(e);
                    return;
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner() {
        return Err(e);
    }
    if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
        return Err(StorageError::Cancelled);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_item_once_and_the_first_failure_stops_the_rest() {
        let seen = AtomicUsize::new(0);
        for_each((0..1000).collect(), 4, None, |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 1000);

        let seen = AtomicUsize::new(0);
        let e = for_each((0..1000).collect(), 1, None, |i: i32| {
            seen.fetch_add(1, Ordering::SeqCst);
            if i == 10 {
                Err(StorageError::Invalid("item 10".into()))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(e.to_string(), StorageError::Invalid("item 10".into()).to_string());
        assert_eq!(seen.load(Ordering::SeqCst), 11, "items after the failure were handed out");

        let cancel = AtomicBool::new(false);
        let e = for_each((0..1000).collect(), 2, Some(&cancel), |i: i32| {
            if i == 5 {
                cancel.store(true, Ordering::SeqCst);
            }
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(e, StorageError::Cancelled));
    }
}
