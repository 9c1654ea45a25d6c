//! Hostile counts and lengths must not cause large allocations: every
//! allocation made while parsing a small hostile file stays small.
//!
//! This binary installs a counting global allocator, so it holds a single
//! test (tests in one binary run on parallel threads and would mix).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{small_valid_file, Raw};
use hearth_gguf::GgufFile;

struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

fn hostile_files() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    // Counts that claim far more than the file holds.
    files.push(Raw::header(3, u64::MAX, 0).zeros(64).build());
    files.push(Raw::header(3, 0, u64::MAX).zeros(64).build());
    files.push(Raw::header(3, 1 << 20, 1 << 20).zeros(64).build());
    for elem in 0u32..=12 {
        for count in [u64::MAX, 1 << 40, 1 << 20] {
            files.push(
                Raw::header(3, 0, 1)
                    .str("a")
                    .u32(9)
                    .u32(elem)
                    .u64(count)
                    .zeros(64)
                    .build(),
            );
        }
    }
    files.push(Raw::header(3, 0, 1).u64(u64::MAX).zeros(64).build());
    files.push(
        Raw::header(3, 0, 1)
            .str("s")
            .u32(8)
            .u64(1 << 40)
            .zeros(64)
            .build(),
    );
    files.push(
        Raw::header(3, 1, 0)
            .str("t")
            .u32(u32::MAX)
            .zeros(64)
            .build(),
    );
    // Every position of a valid file overwritten with extreme values.
    let base = small_valid_file();
    for pos in 0..base.len().saturating_sub(8) {
        for v in [u64::MAX, 1 << 40, i64::MAX as u64, 1 << 31] {
            let mut b = base.clone();
            b[pos..pos + 8].copy_from_slice(&v.to_le_bytes());
            files.push(b);
        }
    }
    files
}

#[test]
fn hostile_files_cause_no_large_allocation() {
    let files = hostile_files();
    let biggest_file = files.iter().map(Vec::len).max().unwrap();
    LARGEST.store(0, Ordering::Relaxed);
    let mut n_err = 0;
    for f in files {
        n_err += GgufFile::from_bytes(f).is_err() as usize;
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(n_err > 100);
    eprintln!("largest allocation: {largest} bytes (largest file {biggest_file} bytes)");
    // Far below anything a lying count could ask for; a small multiple of
    // the largest (< 1 KiB) input.
    assert!(
        largest <= 16 * 1024,
        "largest allocation while parsing was {largest} bytes (largest file {biggest_file})"
    );
}
