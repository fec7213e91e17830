//! Stopping runs: a queued run is marked cancelled; a running one gets SIGTERM, which its
//! worker handles like Ctrl-C (final checkpoint, then `cancelled`). No terminal I/O.
use crate::error::{Error, Result};
use crate::model::RunId;
use crate::store::{RunStatus, Store, pid_alive};

/// Sends SIGTERM to a worker process.
pub fn signal_stop(pid: i64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let pid = i32::try_from(pid).map_err(|_| std::io::Error::other("bad pid"))?;
        // SAFETY: plain kill(2) with SIGTERM on a pid read from the notebook.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        Err(std::io::Error::other("cancelling needs a Unix system"))
    }
}

/// Asks run `id` to stop; returns a one-line description of what was done.
pub fn request_stop(store: &mut Store, id: RunId) -> Result<String> {
    let run = store.get_run(id)?;
    match run.status {
        RunStatus::Queued | RunStatus::QueuedRemote if store.cancel_queued(id)? => {
            Ok(format!("{id} cancelled (it had not started)"))
        }
        RunStatus::Queued | RunStatus::QueuedRemote | RunStatus::Running => {
            let run = store.get_run(id)?;
            let pid = run
                .pid
                .ok_or_else(|| Error::Invalid(format!("{id} has no worker pid yet")))?;
            let host = crate::recorder::hostname();
            if run.host.is_some() && run.host != host {
                return Err(Error::Invalid(format!(
                    "{id} runs on host {}; cancel it there",
                    run.host.unwrap_or_default()
                )));
            }
            if !pid_alive(pid) {
                return Err(Error::Invalid(format!(
                    "{id}'s worker (pid {pid}) is gone; it will be marked crashed"
                )));
            }
            signal_stop(pid)
                .map_err(|e| Error::Invalid(format!("{id}: cannot signal pid {pid}: {e}")))?;
            Ok(format!(
                "{id}: stop requested (pid {pid}: final checkpoint, then cancelled)"
            ))
        }
        done => Err(Error::Invalid(format!("{id} has already ended ({done})"))),
    }
}
