//! A throwaway single-node Slurm cluster for the tests: `munged`, `slurmctld` and `slurmd`
//! from Debian's `slurm-wlm` and `munge` (`.ci/run` installs them), run as root from a
//! generated `slurm.conf` in a temp dir on ports of their own, stopped by pid on drop.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct SlurmCluster {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub node: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {cmd:?}: {e}; the Slurm tests need slurm-wlm and munge (as .ci/run installs) and root"
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SlurmCluster {
    /// Starts the daemons and waits until the node is idle. `extra` goes into slurm.conf.
    pub fn start(extra: &str) -> SlurmCluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["state", "spool", "log", "munge"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let key = d.join("munge/munge.key");
        std::fs::write(
            &key,
            (0..1024).map(|i| (i * 7 + 13) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        }
        let sock = d.join("munge/munge.sock");
        run(Command::new("munged")
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!(
                "--pid-file={}",
                d.join("munge/munged.pid").display()
            ))
            .arg(format!(
                "--log-file={}",
                d.join("munge/munged.log").display()
            ))
            .arg(format!("--seed-file={}", d.join("munge/seed").display()))
            .arg("--force"));
        let node = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let p = |s: &str| d.join(s).display().to_string();
        let conf = d.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=labbook{port}\nSlurmctldHost={node}\nSlurmUser=root\nSlurmdUser=root\n\
                 AuthType=auth/munge\nAuthInfo=socket={sock}\nCryptoType=crypto/munge\n\
                 StateSaveLocation={state}\nSlurmdSpoolDir={spool}\n\
                 SlurmctldPidFile={ctld_pid}\nSlurmdPidFile={d_pid}\n\
                 SlurmctldPort={port}\nSlurmdPort={dport}\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
                 SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
                 SchedulerType=sched/builtin\nJobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\nReturnToService=2\nMpiDefault=none\n\
                 KillWait=5\nMinJobAge=600\n\
                 SlurmctldLogFile={ctld_log}\nSlurmdLogFile={d_log}\n{extra}\n\
                 NodeName={node} CPUs={cpus} State=UNKNOWN\n\
                 PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP\n",
                port = free_port(),
                dport = free_port(),
                sock = sock.display(),
                state = p("state"),
                spool = p("spool"),
                ctld_pid = p("slurmctld.pid"),
                d_pid = p("slurmd.pid"),
                ctld_log = p("log/slurmctld.log"),
                d_log = p("log/slurmd.log"),
            ),
        )
        .unwrap();
        run(Command::new("slurmctld")
            .args(["-f", &conf.display().to_string(), "-i"])
            .env("SLURM_CONF", &conf));
        run(Command::new("slurmd")
            .args(["-f", &conf.display().to_string()])
            .env("SLURM_CONF", &conf));
        let cluster = SlurmCluster { dir, conf, node };
        let t = Instant::now();
        loop {
            let out = Command::new("sinfo")
                .args(["-h", "-o", "%T"])
                .env("SLURM_CONF", &cluster.conf)
                .output()
                .unwrap();
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "idle" {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the node never became idle (sinfo: {state:?}); logs in {}",
                cluster.dir.path().join("log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster
    }

    /// A Slurm client command against this cluster; its stdout.
    pub fn cmd(&self, prog: &str, args: &[&str]) -> String {
        let out = Command::new(prog)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `scontrol show job`'s `JobState` of job `id`.
    pub fn job_state(&self, id: u64) -> String {
        let out = self.cmd("scontrol", &["show", "job", "-o", &id.to_string()]);
        out.split_whitespace()
            .find_map(|kv| kv.strip_prefix("JobState="))
            .unwrap_or("")
            .to_string()
    }

    fn stop(pid_file: &Path) {
        if let Ok(pid) = std::fs::read_to_string(pid_file) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        // Jobs first, so no job outlives its cluster.
        let _ = Command::new("scancel")
            .args(["--partition", "debug"])
            .env("SLURM_CONF", &self.conf)
            .status();
        let d = self.dir.path();
        for pid in ["slurmd.pid", "slurmctld.pid", "munge/munged.pid"] {
            Self::stop(&d.join(pid));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
