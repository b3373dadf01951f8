//! The thread that encodes exports' rows, at a lower CPU priority than the gateway's other
//! threads.
//!
//! An export is bulk work nobody waits on row by row; a webhook's sender waits on the accept
//! path. Deployments give the gateway a high CPU priority for the accept path's sake
//! (docs/operations.md), which an export's encoding would otherwise share. On its own thread
//! at a lower priority, the encoding takes what the accept path leaves; the export's pace
//! (`EXPORT_ROWS_PER_SEC`) bounds what it asks for. Exports share the one thread: encoding is a
//! small part of an export's cost next to the database's.

use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// Runs jobs on the encoding thread; cheap to clone. The thread ends when the last handle goes.
#[derive(Clone)]
pub struct EncodeThread {
    jobs: mpsc::Sender<Job>,
}

/// How much lower than the process the thread runs (a nice value; 19 is the lowest priority).
const NICER_BY: i32 = 10;

impl EncodeThread {
    pub fn start() -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("export-encode".into())
            .spawn(move || {
                lower_priority();
                for job in queue {
                    // A job that panics fails its own export (its result never comes); the
                    // thread goes on with the others'.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the thread and waits for its result; `None` when the job panicked.
    pub async fn run<T, F>(&self, job: F) -> Option<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The export may have gone while the job waited its turn: nothing to hand over.
            let _ = done.send(job());
        });
        // The thread only ends with the last handle, and this is one.
        self.jobs.send(job).ok()?;
        result.await.ok()
    }
}

/// Lowers the calling thread's priority. Linux keeps a nice value per thread; elsewhere the
/// thread keeps the process's priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        // -1 is also a valid nice value; the errno that tells the two apart is not worth it
        // here: on failure the thread just keeps the process's priority.
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        let lower = (current + NICER_BY).min(19);
        if libc::setpriority(libc::PRIO_PROCESS, tid, lower) != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "the export encoding thread keeps the gateway's CPU priority"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_thread_and_hand_back_their_result() {
        let thread = EncodeThread::start().unwrap();
        let name = thread
            .run(|| std::thread::current().name().map(str::to_owned))
            .await;
        assert_eq!(name, Some(Some("export-encode".to_owned())));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_thread_runs_at_a_lower_priority_than_the_process() {
        // SAFETY: reads the nice values of this process's threads.
        let ours = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let thread = EncodeThread::start().unwrap();
        let theirs = thread
            .run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) })
            .await
            .unwrap();
        assert_eq!(theirs, (ours + NICER_BY).min(19));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_that_export_only() {
        let thread = EncodeThread::start().unwrap();
        assert_eq!(thread.run(|| -> u8 { panic!("encoding bug") }).await, None);
        assert_eq!(thread.run(|| 7).await, Some(7), "the thread goes on");
    }
}
