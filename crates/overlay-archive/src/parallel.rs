//! Workers that make an import's entries while the importing thread reads
//! ahead: the tar is one stream, but creating its files is independent
//! work once each file's directory exists and nothing else in flight
//! touches its name.
//!
//! Entries go to the workers in numbered batches (one hand-over per batch,
//! not per file). The importer tracks which batch made each name (see
//! [`crate::import`]) and, before an entry whose result depends on an
//! earlier one (a hard link to it, a later entry for the same name, a name
//! below a symlink the tar made), waits for that batch or for all of them.
//! A failure stops the workers at their next entry; the importer reports
//! the failure of the earliest entry, as a sequential import would.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::{Scope, ScopedJoinHandle};

use crossbeam::channel::{Receiver, Sender, bounded};

use crate::apply::{Applier, Job, Near};
use crate::error::ArchiveError;

/// Entries per batch.
const BATCH: usize = 64;
/// File bytes per batch: a batch of large files goes sooner.
const BATCH_BYTES: usize = 4 << 20;

/// A batch number; [`Pool::DONE`] for entries made on the importing thread.
pub(crate) type Seq = u64;

/// The workers of one import, and the batch being filled.
pub(crate) struct Pool<'a> {
    jobs: Option<Sender<(Seq, Vec<Job>)>>,
    spare: Receiver<Vec<u8>>,
    shared: &'a Shared,
    batch: Vec<Job>,
    bytes: usize,
    next: Seq,
}

/// What the workers and the importer share.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    failed: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Which batches are done, by number.
    done: Vec<bool>,
    /// Batches handed over and not done.
    outstanding: usize,
    /// Failures, with the index of the entry.
    errors: Vec<(u64, ArchiveError)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Has any worker failed?
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

impl<'a> Pool<'a> {
    /// Not a batch: made on the importing thread, nothing to wait for.
    pub const DONE: Seq = Seq::MAX;

    /// Starts `workers` threads in `scope`, applying with `applier`.
    ///
    /// The caller joins the returned handles after [`finish`](Self::finish):
    /// the scope alone would count a worker done before its thread-local
    /// destructors ran (LeakSanitizer in the fuzz target saw them).
    pub fn start<'s, 'env: 's>(
        scope: &'s Scope<'s, 'env>,
        applier: &'env Applier<'env>,
        shared: &'a Shared,
        workers: usize,
    ) -> (Self, Vec<ScopedJoinHandle<'s, ()>>)
    where
        'a: 's,
    {
        let (jobs_tx, jobs_rx) = bounded::<(Seq, Vec<Job>)>(workers * 2);
        let (spare_tx, spare_rx) = bounded::<Vec<u8>>(BATCH * (workers * 3 + 1));
        let handles = (0..workers)
            .map(|_| {
                let jobs_rx = jobs_rx.clone();
                let spare_tx = spare_tx.clone();
                scope.spawn(move || work(applier, shared, &jobs_rx, &spare_tx))
            })
            .collect();
        let pool = Self {
            jobs: Some(jobs_tx),
            spare: spare_rx,
            shared,
            batch: Vec::with_capacity(BATCH),
            bytes: 0,
            next: 0,
        };
        (pool, handles)
    }

    /// Has a worker failed? (Then the import stops reading.)
    pub fn failed(&self) -> bool {
        self.shared.failed()
    }

    /// A buffer for a file's data, reused when a worker gives one back.
    pub fn buffer(&self) -> Vec<u8> {
        self.spare.try_recv().unwrap_or_default()
    }

    /// Adds `job` to the current batch; returns the batch's number.
    pub fn push(&mut self, job: Job) -> Seq {
        if let crate::apply::Make::File { len, .. } = &job.make {
            self.bytes += len;
        }
        self.batch.push(job);
        let seq = self.next;
        if self.batch.len() >= BATCH || self.bytes >= BATCH_BYTES {
            self.flush();
        }
        seq
    }

    /// Hands the current batch over (waiting while the workers are full).
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.bytes = 0;
        let seq = self.next;
        self.next += 1;
        {
            let mut st = self.shared.lock();
            st.outstanding += 1;
            let len = st.done.len().max(seq as usize + 1);
            st.done.resize(len, false);
        }
        if let Some(tx) = &self.jobs
            && tx.send((seq, batch)).is_err()
        {
            // Every worker is gone (they only leave when the channel
            // closes, or by a panic already recorded): nothing will run it.
            let mut st = self.shared.lock();
            st.outstanding -= 1;
            st.done[seq as usize] = true;
            st.errors.push((0, worker_gone()));
            self.shared.failed.store(true, Ordering::Relaxed);
        }
    }

    /// Waits until batch `seq` is made (at once for [`Pool::DONE`]).
    pub fn wait_for(&mut self, seq: Seq) {
        if seq == Self::DONE {
            return;
        }
        if seq == self.next {
            self.flush();
        }
        let mut st = self.shared.lock();
        while !st.done.get(seq as usize).copied().unwrap_or(true) {
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Waits until everything handed over is made.
    pub fn wait_all(&mut self) {
        self.flush();
        let mut st = self.shared.lock();
        while st.outstanding > 0 {
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Waits for everything, stops the workers, and returns the failure of
    /// the earliest entry, if any failed.
    pub fn finish(mut self) -> Option<(u64, ArchiveError)> {
        self.wait_all();
        self.jobs = None;
        let mut st = self.shared.lock();
        let errors = std::mem::take(&mut st.errors);
        errors.into_iter().min_by_key(|(index, _)| *index)
    }
}

fn worker_gone() -> ArchiveError {
    ArchiveError::Read(std::io::Error::other("the import's worker threads stopped"))
}

/// A worker: makes batches until the channel closes. After a failure
/// anywhere, it only marks batches done.
fn work(applier: &Applier<'_>, shared: &Shared, jobs: &Receiver<(Seq, Vec<Job>)>, spare: &Sender<Vec<u8>>) {
    while let Ok((seq, batch)) = jobs.recv() {
        let mut failure = None;
        let mut near = Near::default();
        for job in batch {
            if shared.failed() {
                break;
            }
            let index = job.index;
            let name = job.name.clone();
            let (result, buffer) = std::panic::catch_unwind(AssertUnwindSafe(|| applier.run(job, &mut near)))
                .unwrap_or_else(|_| {
                    let e = ArchiveError::Read(std::io::Error::other(format!(
                        "a worker thread panicked applying {name:?}"
                    )));
                    (Err(e), None)
                });
            if let Some(b) = buffer {
                let _ = spare.try_send(b);
            }
            if let Err(e) = result {
                shared.failed.store(true, Ordering::Relaxed);
                failure = Some((index, e));
                break;
            }
        }
        let mut st = shared.lock();
        if let Some(f) = failure {
            st.errors.push(f);
        }
        st.outstanding -= 1;
        st.done[seq as usize] = true;
        drop(st);
        shared.changed.notify_all();
    }
}
