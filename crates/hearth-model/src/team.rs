//! The forward pass's thread team. For the length of one forward pass the pool's other
//! threads spin, watching one shared word, so each parallel section (a prompt layer has
//! about a dozen, a decoded token over a hundred) starts with a few atomic stores and ends
//! when a counter reaches its task count: no job hand-off, no thread falling asleep
//! between two sections and waiting for a wake-up (in a virtual machine the wake-up alone
//! took ~0.4 ms on average, and a prompt pass had ~400 of them).
//!
//! Each member starts with a contiguous share of a section's tasks and, when done with
//! it, takes what is left of the others', so a section balances itself. A section opened
//! on a thread with no team (a product called outside a forward pass) runs on the rayon
//! pool.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;

use rayon::prelude::*;

/// Bits of a task index in a member's share word (the rest: the generation).
const IDX_BITS: u32 = 20;
const IDX_MASK: u64 = (1 << IDX_BITS) - 1;
/// Most tasks one section may have.
const MAX_TASKS: usize = IDX_MASK as usize;

/// One section's work: task `i` is `f(i)`.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

/// An atomic word on a cache line of its own.
#[repr(align(128))]
struct Padded<T>(T);

struct Team {
    /// The open section's generation; members watch it for the next section.
    generation: Padded<AtomicU64>,
    /// Each member's share of the open section's tasks, `generation (24 bits) | next
    /// (20 bits) | end (20 bits)`. A member runs its own share from the front, then
    /// takes tasks from the others' (a compare-and-swap on the share's word, which also
    /// checks its generation). Contiguous shares keep each thread's weight rows in one
    /// stream through memory, as the decode products' prefetches expect.
    shares: Vec<Padded<AtomicU64>>,
    /// The open section's job, on its caller's stack. Written before the generation
    /// store that opens the section, replaced only after every task of it has finished.
    job: AtomicPtr<Job<'static>>,
    /// Tasks of the open section finished.
    done: Padded<AtomicUsize>,
    /// Set when the forward pass is over: the members leave.
    finished: AtomicBool,
    /// The first panic of a task, re-raised on the section's caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// The thread the pass runs on (known once the pool has picked it).
    owner: std::sync::OnceLock<std::thread::ThreadId>,
}

thread_local! {
    /// The team whose forward pass runs on this thread, if any.
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

impl Team {
    fn new(n_members: usize) -> Team {
        Team {
            generation: Padded(AtomicU64::new(0)),
            shares: (0..n_members).map(|_| Padded(AtomicU64::new(0))).collect(),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: Padded(AtomicUsize::new(0)),
            finished: AtomicBool::new(false),
            panic: Mutex::new(None),
            owner: std::sync::OnceLock::new(),
        }
    }

    /// Claims the next task of member `m`'s share in section `generation`, if one is left.
    fn claim(&self, m: usize, generation: u64) -> Option<usize> {
        let share = &self.shares[m].0;
        let mut w = share.load(Acquire);
        loop {
            let (next, end) = ((w >> IDX_BITS) & IDX_MASK, w & IDX_MASK);
            if w >> (2 * IDX_BITS) != generation || next >= end {
                return None;
            }
            match share.compare_exchange_weak(w, w + (1 << IDX_BITS), AcqRel, Acquire) {
                Ok(_) => return Some(next as usize),
                Err(cur) => w = cur,
            }
        }
    }

    /// Member `me`'s part of section `generation`: its own share, then whatever is left
    /// of the others'.
    fn help(&self, me: usize, generation: u64) {
        let n = self.shares.len();
        for k in 0..n {
            let m = (me + k) % n;
            while let Some(i) = self.claim(m, generation) {
                self.run(i);
            }
        }
    }

    /// Runs claimed task `i` and counts it done.
    fn run(&self, i: usize) {
        // SAFETY: the claim succeeded on a share word of this section, whose generation
        // store came after the job pointer's (acquire/release); the caller keeps the job
        // alive and in place until `done` counts this task.
        let job = unsafe { &*self.job.load(Acquire) };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| (job.f)(i))) {
            self.panic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(p);
        }
        self.done.0.fetch_add(1, Release);
    }

    /// `f(i)` for `i in 0..n` on every member; returns when all are done.
    fn section(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        assert!(n <= MAX_TASKS, "a parallel section of {n} tasks");
        let job = Job { f };
        // SAFETY (lifetime): `job` outlives every use of the pointer: members read it only
        // for tasks of this section, and this function returns after all of them finish.
        self.job
            .store((&job as *const Job<'_>).cast_mut().cast(), Relaxed);
        self.done.0.store(0, Relaxed);
        let generation = (self.generation.0.load(Relaxed) + 1) & ((1 << (64 - 2 * IDX_BITS)) - 1);
        let n_members = self.shares.len();
        for (m, share) in self.shares.iter().enumerate() {
            let (start, end) = ((m * n / n_members) as u64, ((m + 1) * n / n_members) as u64);
            share.0.store(
                generation << (2 * IDX_BITS) | start << IDX_BITS | end,
                Relaxed,
            );
        }
        self.generation.0.store(generation, Release);
        // A section opened inside one of this section's tasks runs on its own thread.
        let outer = CURRENT.with(|c| c.replace(std::ptr::null()));
        self.help(0, generation);
        CURRENT.with(|c| c.set(outer));
        let mut idle = 0;
        while self.done.0.load(Acquire) < n {
            idle = pause(idle);
        }
        if let Some(p) = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(p);
        }
    }

    /// Member `me`'s loop: take part in each section until the pass is over.
    fn work(&self, me: usize) {
        if self.owner.get() == Some(&std::thread::current().id()) {
            // The pass's own thread picked up a member's job (inside some blocking rayon
            // call): spinning here would wait for itself.
            return;
        }
        let (mut seen, mut idle) = (0, 0u32);
        while !self.finished.load(Acquire) {
            let generation = self.generation.0.load(Acquire);
            if generation != seen {
                (seen, idle) = (generation, 0);
                self.help(me, generation);
            } else {
                idle = pause(idle);
            }
        }
    }
}

/// One wait step: a spin-loop hint, or after [`SPINS`] of them a yield to the OS, so a
/// pool with more threads than cores still lets the working ones run.
fn pause(idle: u32) -> u32 {
    if idle < SPINS {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
    idle.saturating_add(1)
}

/// Spin-loop hints before a waiting member yields (a few tens of microseconds).
const SPINS: u32 = 2000;

/// Runs `f` (a forward pass) with the current rayon pool's threads as its team: the
/// sections it opens with [`par_each`] run on all of them.
pub(crate) fn with_team<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let n_threads = rayon::current_num_threads();
    if n_threads <= 1 {
        return f();
    }
    let team = Team::new(n_threads);
    rayon::scope(|s| {
        let team = &team;
        team.owner.get_or_init(|| std::thread::current().id());
        for me in 1..n_threads {
            s.spawn(move |_| team.work(me));
        }
        /// Installs the team on this thread, and on the way out (a return or a panic)
        /// uninstalls it and lets the members go.
        struct Installed<'a>(&'a Team, *const Team);
        impl Drop for Installed<'_> {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.1));
                self.0.finished.store(true, Release);
            }
        }
        let _installed = Installed(team, CURRENT.with(|c| c.replace(team)));
        f()
    })
}

/// Slots that hand each item out once, to whichever member claims its index.
struct Slots<T>(Vec<UnsafeCell<Option<T>>>);

// SAFETY: slot `i` is only touched by the one member that claimed task `i` (a section hands
// out each index once), so sharing the slots moves each `T` to one thread.
unsafe impl<T: Send> Sync for Slots<T> {}

/// `f(item)` for every item, in parallel on the team, or on the rayon pool when this
/// thread has no team.
pub(crate) fn par_each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync) {
    let team = CURRENT.with(|c| c.get());
    if team.is_null() {
        items.into_par_iter().for_each(&f);
        return;
    }
    if items.len() <= 1 {
        items.into_iter().for_each(f);
        return;
    }
    let slots = &Slots(
        items
            .into_iter()
            .map(|t| UnsafeCell::new(Some(t)))
            .collect(),
    );
    let task = |i: usize| {
        // SAFETY: task `i` runs once, on one member; no other task touches slot `i`.
        let item = unsafe { (*slots.0[i].get()).take() };
        f(item.expect("each task runs once"));
    };
    // SAFETY: CURRENT is set only while `with_team` runs on this thread, and the team
    // lives on that call's stack for that whole time.
    unsafe { &*team }.section(slots.0.len(), &task);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    }

    #[test]
    fn every_item_runs_once_in_every_section() {
        for n_threads in [1, 2, 3] {
            pool(n_threads).install(|| {
                with_team(|| {
                    for (section, n) in [0usize, 1, 2, 5, 64, 1000, 3].into_iter().enumerate() {
                        let mut out = vec![0usize; n];
                        let items: Vec<(usize, &mut usize)> = out.iter_mut().enumerate().collect();
                        par_each(items, |(i, o)| *o += i * 10 + section);
                        assert!(
                            out.iter().enumerate().all(|(i, &o)| o == i * 10 + section),
                            "threads {n_threads} section {section}"
                        );
                    }
                })
            });
        }
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_team_goes_on() {
        pool(2).install(|| {
            with_team(|| {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    par_each((0..50).collect(), |i: i32| {
                        assert!(i != 37, "task 37 fails")
                    });
                }));
                assert!(r.is_err());
                let sum = AtomicUsize::new(0);
                par_each((0..100usize).collect(), |i| {
                    sum.fetch_add(i, Relaxed);
                });
                assert_eq!(sum.into_inner(), 4950);
            })
        });
        // The pool is free again once the pass is over.
        assert_eq!(pool(2).install(|| with_team(|| 7)), 7);
    }

    #[test]
    fn a_section_inside_a_task_runs_on_its_thread() {
        pool(2).install(|| {
            with_team(|| {
                let sum = AtomicUsize::new(0);
                par_each((0..4usize).collect(), |i| {
                    par_each((0..3usize).collect(), |j| {
                        sum.fetch_add(i * 3 + j, Relaxed);
                    });
                });
                assert_eq!(sum.into_inner(), (0..12).sum::<usize>());
            })
        });
    }
}
