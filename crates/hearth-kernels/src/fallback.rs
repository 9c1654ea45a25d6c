//! Counts the calls that took a scalar twin although the process's ISA has SIMD kernels
//! (a shape no kernel handles, such as a head width the attention kernels do not take),
//! so that a caller can tell that a model runs slower than it should. The scalar path
//! chosen on purpose (`HEARTH_ISA=scalar`, or a CPU without the kernels' ISA) is not
//! counted.
//!
//! Only the fallback branches call [`record`]; the SIMD paths never touch this module.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Fallback calls since the process started.
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// The kernels that fell back since the last [`take`], each once, in the order first seen.
static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// Notes one call of `kernel` that ran its scalar twin instead of a SIMD kernel.
#[cold]
pub fn record(kernel: &'static str) {
    COUNT.fetch_add(1, Ordering::Relaxed);
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if !names.contains(&kernel) {
        names.push(kernel);
    }
}

/// How many calls have fallen back since the process started ([`take`] does not reset it).
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// The kernels that have fallen back since the last call (each named once), and forgets them.
pub fn take() -> Vec<&'static str> {
    std::mem::take(&mut *NAMES.lock().unwrap_or_else(PoisonError::into_inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_each_name_once_and_counts_every_call() {
        // Other tests of this crate may record too (in parallel): check only what this adds.
        let before = count();
        record("fallback test kernel");
        record("fallback test kernel");
        assert!(count() >= before + 2);
        let names = take();
        assert_eq!(
            names
                .iter()
                .filter(|&&n| n == "fallback test kernel")
                .count(),
            1
        );
        assert!(!take().contains(&"fallback test kernel"));
    }
}
