//! The processes of a job: git, the build and the training run, each started with a
//! cleared environment (plus an allow-list and `[runner] env`), in a process group of its
//! own that a stop reaches (SIGTERM, then SIGKILL), with its output copied into a log that
//! never grows past `max_log`; and the log's tail for the results comment, read from its end.
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::protocol;

/// The last 8,000 characters of a job log, read from its end (a log can be gigabytes).
pub fn read_tail(log: &Path) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    const TAIL_BYTES: u64 = 64 * 1024;
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
        .ok()?;
    let mut buf = Vec::with_capacity(TAIL_BYTES.min(len) as usize);
    f.take(TAIL_BYTES).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    Some(protocol::tail_chars(&text, 8_000).to_string())
}

/// Environment variables every job gets (when the runner has them); `LC_*` and `CUDA_*`
/// pass by prefix. Everything else is cleared unless `[runner] env` names it.
const JOB_ENV: [&str; 8] = [
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "CARGO_HOME",
    "RUSTUP_HOME",
];

/// Never passed to a job, whatever `[runner] env` says.
const SECRET_ENV: [&str; 4] = ["GITHUB_TOKEN", "GH_TOKEN", "LABBOOK_DB", "LABBOOK_CONFIG"];

/// Whether variable `name` of the runner's environment reaches its jobs.
pub fn passes_to_job(name: &str, extra: &[String]) -> bool {
    !SECRET_ENV.contains(&name)
        && (JOB_ENV.contains(&name)
            || name.starts_with("LC_")
            || name.starts_with("CUDA_")
            || extra.iter().any(|e| e == name))
}

/// `prog` with a cleared environment plus the variables that pass to jobs (`extra`:
/// `[runner] env`).
pub fn job_command(prog: &str, extra: &[String]) -> Command {
    let mut cmd = Command::new(prog);
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| passes_to_job(k, extra)) {
            cmd.env(k, v);
        }
    }
    cmd
}

/// How long a stopped job has between SIGTERM (its final checkpoint) and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Runs `argv` in `dir` with output appended to `log` (capped at `max_log`, keeping its
/// start and its end), with a cleared environment (see [`passes_to_job`]) plus `env`; in a
/// process group of its own, stopped with SIGTERM and then SIGKILL when `kill` is set,
/// killed when the runner dies. Returns the exit code (-1 when killed by a signal).
pub fn run_logged(
    argv: &[String],
    dir: &Path,
    log: &Path,
    env: &[(&str, &Path)],
    kill: &AtomicBool,
    (extra_env, max_log): (&[String], u64),
) -> std::io::Result<i32> {
    let Some((prog, args)) = argv.split_first() else {
        return Err(std::io::Error::other("empty command"));
    };
    let (reader, writer) = std::io::pipe()?;
    let mut cmd = job_command(prog, extra_env);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    for (k, v) in env {
        cmd.env(k, v);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setpgid(2) and prctl(2) are async-signal-safe. Its own process group, so
        // a stop reaches the build's or the job's children too; killed if this thread
        // (which waits for it) or the runner dies, so a killed runner leaves no orphan.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setpgid(0, 0) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let spawned = cmd.spawn();
    // Our copies of the pipe's write end must go, or the copier never sees its end.
    drop(cmd);
    let mut child = spawned?;
    let capped = CappedLog::open(log, max_log)?;
    let copier = std::thread::spawn(move || capped.copy_from(reader));
    let group = child.id() as i32;
    let signal = |sig: i32| {
        #[cfg(target_os = "linux")]
        // SAFETY: kill(2) on the child's own process group (its pid, set by setpgid above).
        unsafe {
            libc::kill(-group, sig);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = sig;
    };
    let mut term_sent: Option<Instant> = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if kill.load(Ordering::SeqCst) {
            match term_sent {
                None => {
                    signal(libc::SIGTERM);
                    term_sent = Some(Instant::now());
                }
                Some(t) if t.elapsed() >= KILL_GRACE => {
                    signal(libc::SIGKILL);
                    let _ = child.kill();
                    break child.wait()?;
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // A grandchild still holding the pipe must not hold the job up: wait a little only.
    let waited = Instant::now();
    while !copier.is_finished() && waited.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(status.code().unwrap_or(-1))
}

/// A job log that never grows past `max` bytes: once it does, the first half of `max` and
/// the last quarter are kept with a note between them (the middle is dropped), so a run
/// that prints without end cannot fill the runner's disk.
struct CappedLog {
    file: std::fs::File,
    len: u64,
    max: u64,
}

impl CappedLog {
    fn open(path: &Path, max: u64) -> std::io::Result<CappedLog> {
        use std::io::{Seek, SeekFrom};
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)?;
        let len = file.seek(SeekFrom::End(0))?;
        Ok(CappedLog {
            file,
            len,
            max: max.max(1024),
        })
    }

    fn copy_from(mut self, mut from: impl Read) {
        use std::io::Write as _;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if self.file.write_all(&buf[..n]).is_err() {
                return;
            }
            self.len += n as u64;
            if self.len > self.max && self.cut_middle().is_err() {
                return;
            }
        }
    }

    fn cut_middle(&mut self) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom, Write as _};
        let head = self.max / 2;
        let keep = self.max / 4;
        let mut tail = vec![0u8; keep as usize];
        self.file.seek(SeekFrom::Start(self.len - keep))?;
        self.file.read_exact(&mut tail)?;
        self.file.set_len(head)?;
        self.file.seek(SeekFrom::Start(head))?;
        let note = format!(
            "\n[labbook runner: the log passed max_log ({} bytes); its middle was dropped here]\n",
            self.max
        );
        self.file.write_all(note.as_bytes())?;
        self.file.write_all(&tail)?;
        self.len = head + note.len() as u64 + keep;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_past_max_log_keeps_its_start_and_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        let max = 64 * 1024;
        let capped = CappedLog::open(&path, max).unwrap();
        // 2 MB of numbered lines, far past the cap, in reads of every size.
        let text: String = (0..100_000).map(|i| format!("line {i:06}\n")).collect();
        capped.copy_from(std::io::Cursor::new(text.clone().into_bytes()));
        let kept = std::fs::read_to_string(&path).unwrap();
        assert!(kept.len() as u64 <= max + 200, "{} bytes", kept.len());
        assert!(kept.starts_with("line 000000\nline 000001\n"));
        assert!(
            kept.ends_with("line 099999\n"),
            "{}",
            &kept[kept.len() - 40..]
        );
        assert!(kept.contains("its middle was dropped here"));
        // The tail is read from the end, not the whole file.
        let tail = read_tail(&path).unwrap();
        assert!(tail.ends_with("line 099999\n") && tail.len() <= 8_000 * 4);
        // A later command of the same job appends, still under the cap.
        let again = CappedLog::open(&path, max).unwrap();
        again.copy_from(std::io::Cursor::new(text.into_bytes()));
        let kept = std::fs::read_to_string(&path).unwrap();
        assert!(kept.len() as u64 <= max + 200 && kept.starts_with("line 000000\n"));
    }

    /// A huge log (sparse, 32 GiB) is read from its end: reading it whole would not fit
    /// in memory.
    #[test]
    fn the_log_tail_is_read_from_the_end_of_a_huge_log() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        let mut f = std::fs::File::create(&path).unwrap();
        f.set_len(32 << 30).unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).unwrap();
        f.write_all(b"\nthe last words\n").unwrap();
        let started = std::time::Instant::now();
        let tail = read_tail(&path).unwrap();
        assert!(tail.ends_with("the last words\n"), "{tail:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn only_the_allow_list_and_named_variables_pass_to_jobs() {
        let extra = vec!["DATA".to_string(), "GITHUB_TOKEN".to_string()];
        for ok in [
            "PATH",
            "HOME",
            "LC_ALL",
            "CUDA_VISIBLE_DEVICES",
            "CARGO_HOME",
            "DATA",
        ] {
            assert!(passes_to_job(ok, &extra), "{ok}");
        }
        for no in [
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "LABBOOK_DB",
            "AWS_SECRET_ACCESS_KEY",
            "SSH_AUTH_SOCK",
        ] {
            assert!(!passes_to_job(no, &extra), "{no}");
        }
    }
}
