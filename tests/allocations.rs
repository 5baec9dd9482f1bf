//! Allocations per event on the hot path, counted by a counting global allocator, so they
//! cannot creep back unnoticed (issue 12). The workload is `benches/workload.rs`: distinct
//! RingCentral telephony-session notifications → Vidyo, through the same code as the
//! gateway. Budgets sit a little above what the code does today; a change that needs more
//! must say why and raise them. Counts, not times: the result does not depend on the machine.

#[path = "../benches/workload.rs"]
mod workload;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use workload::Workload;

/// Counts allocations (and bytes) made by the current thread while counting is on.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count(bytes: usize) {
    // `try_with`: the thread-locals may be gone while a thread exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
            BYTES.with(|b| b.set(b.get() + bytes as u64));
        }
    });
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` for `n` items and returns the mean allocations and allocated bytes per item.
fn per_item(n: usize, mut f: impl FnMut(usize)) -> (f64, f64) {
    ALLOCATIONS.with(|a| a.set(0));
    BYTES.with(|b| b.set(0));
    COUNTING.with(|on| on.set(true));
    for i in 0..n {
        f(i);
    }
    COUNTING.with(|on| on.set(false));
    let allocations = ALLOCATIONS.with(Cell::get) as f64 / n as f64;
    let bytes = BYTES.with(Cell::get) as f64 / n as f64;
    (allocations, bytes)
}

const EVENTS: usize = 500;

#[test]
fn decode_encode_and_pipeline_stay_within_their_allocation_budgets() {
    let w = Workload::new();
    let body = w.notification(0);
    let event = w.decode(&body).remove(0);
    // Warm up: first uses allocate once (caches, lazily built state).
    w.encode(&event);
    w.pipeline(&w.notification(EVENTS + 1));
    let bodies: Vec<Vec<u8>> = (0..EVENTS).map(|i| w.notification(i)).collect();

    let (decode, _) = per_item(EVENTS, |_| drop(w.decode(&body)));
    let (encode, _) = per_item(EVENTS, |_| drop(w.encode(&event)));
    let (pipeline, pipeline_bytes) = per_item(EVENTS, |i| {
        w.pipeline(&bodies[i]);
    });
    println!(
        "allocations per event: decode {decode:.1}, encode {encode:.1}, pipeline {pipeline:.1} ({pipeline_bytes:.0} bytes)"
    );
    for (stage, measured, budget) in [
        ("decode", decode, DECODE_BUDGET),
        ("encode", encode, ENCODE_BUDGET),
        ("pipeline", pipeline, PIPELINE_BUDGET),
    ] {
        assert!(
            measured <= budget,
            "{stage}: {measured:.1} allocations per event, over its budget of {budget}"
        );
    }
}

/// Budgets: today's counts plus about 5%.
const DECODE_BUDGET: f64 = 232.0;
const ENCODE_BUDGET: f64 = 320.0;
const PIPELINE_BUDGET: f64 = 610.0;
