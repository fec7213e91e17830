//! The runner's Slurm executor against a real single-node Slurm (started per test, see
//! `slurm_cluster`): request → runner → sbatch → results with the Slurm job id → sync;
//! scancel when the request is closed; Slurm's time limit reported with its reason; a
//! restarted runner re-attaching to its running job; `--dry-run`. In their own test binary
//! so the rest of the suite does not wait for them.
use std::process::{Command, Stdio};
use std::time::Duration;

use labbook::model::RunId;
use labbook::store::RunStatus;

mod remote_world;
mod slurm_cluster;
use remote_world::*;
use slurm_cluster::SlurmCluster;

/// A runner with the Slurm executor on `cluster`; `extra` is more `[runner.slurm]` keys, as
/// dotted keys (`slurm.time = "1"`).
fn slurm_runner(w: &World, c: &SlurmCluster, name: &str, extra: &str, args: &[&str]) -> Command {
    let mut cmd = w.runner_cmd_config(
        name,
        &format!(
            "build = [\"true\"]\nbin = \"{BIN}\"\nenv = [\"SLURM_CONF\"]\nexecutor = \"slurm\"\n\
             slurm.partition = \"debug\"\nslurm.poll = \"300ms\"\n{extra}"
        ),
        args,
    );
    cmd.env("SLURM_CONF", &c.conf);
    cmd
}

#[test]
fn a_request_runs_as_a_slurm_job_and_comes_back_with_its_id() {
    let c = SlurmCluster::start("");
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    // --dry-run shows the script and claims nothing.
    let out = slurm_runner(&w, &c, "gpu-1", "", &["--executor", "slurm", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let script = String::from_utf8_lossy(&out.stdout).to_string();
    for line in [
        format!("#SBATCH --job-name=labbook-{n}"),
        "#SBATCH --partition=debug".to_string(),
        "exec ".to_string(),
    ] {
        assert!(script.contains(&line), "{line} missing:\n{script}");
    }
    assert!(w.comments(n).is_empty(), "a dry run claimed");

    let out = slurm_runner(&w, &c, "gpu-1", "", &["--once"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let r = w.only_result(n);
    assert_eq!(r.status, "succeeded", "{r:?}\n{}", text(&out));
    let job = r.slurm.clone().expect("the results name the Slurm job");
    assert_eq!(job.state, "COMPLETED");
    assert_eq!(job.node.as_deref(), Some(c.node.as_str()));
    assert_eq!(c.job_state(job.job_id), "COMPLETED");
    let comment = w.results_comment(n);
    assert!(
        comment.contains(&format!("Slurm job {} on `{}`", job.job_id, c.node)),
        "{comment}"
    );
    // The script is kept in the job folder.
    let kept = w
        .dir
        .path()
        .join(format!("gpu-1/work/jobs/issue-{n}/job.sbatch"));
    assert!(std::fs::read_to_string(kept).unwrap().contains("#SBATCH"));
    w.sync_alice();
    let run = w.alice_store().get_run(RunId(1)).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
}

#[test]
fn closing_the_request_cancels_the_slurm_job() {
    let c = SlurmCluster::start("");
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &["--set", "train.steps=50000"]);
    let runner = slurm_runner(&w, &c, "gpu-1", "", &["--once"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut runner = Reap(Some(runner));
    wait_for("the Slurm job to run", Duration::from_secs(120), || {
        w.comments(n).iter().any(|b| b.contains(": RUNNING on "))
    });
    w.fake.state().issue_mut(n).state = "closed".into();
    let mut r = runner.0.take().unwrap();
    wait_for("the runner to stop", Duration::from_secs(120), || {
        r.try_wait().unwrap().is_some()
    });
    let results = w.only_result(n);
    assert_eq!(results.status, "cancelled", "{results:?}");
    let job = results.slurm.expect("the Slurm job");
    assert_eq!(c.job_state(job.job_id), "CANCELLED");
}

#[test]
fn a_job_over_slurms_time_limit_is_reported_with_that_reason() {
    let c = SlurmCluster::start("");
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &["--set", "train.steps=500000"]);
    // One minute: Slurm's smallest limit (it checks limits every 30 s, so this takes ~1-2 min).
    let out = slurm_runner(&w, &c, "gpu-1", "slurm.time = \"1\"\n", &["--once"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let r = w.only_result(n);
    assert_eq!(r.status, "failed", "{r:?}");
    let job = r.slurm.clone().expect("the Slurm job");
    assert_eq!(job.state, "TIMEOUT");
    let error = r.error.unwrap_or_default();
    assert!(
        error.contains("TIMEOUT") && error.contains("time limit"),
        "{error}"
    );
}

#[test]
fn a_restarted_runner_re_attaches_to_its_running_slurm_job() {
    let c = SlurmCluster::start("");
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &["--set", "train.steps=1500"]);
    let first = slurm_runner(&w, &c, "gpu-1", "", &[])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the Slurm job to run", Duration::from_secs(120), || {
        w.comments(n).iter().any(|b| b.contains(": RUNNING on "))
    });
    // The runner dies (no chance to cancel anything); Slurm keeps running the job.
    kill(first);
    let marker = w
        .dir
        .path()
        .join(format!("gpu-1/work/jobs/issue-{n}/slurm.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(marker).unwrap()).unwrap();
    let id = v["job_id"].as_u64().unwrap();
    assert_eq!(c.job_state(id), "RUNNING");
    // A new runner on the same workdir, once the dead one's lease has run out.
    std::thread::sleep(Duration::from_secs(6));
    let out = slurm_runner(&w, &c, "gpu-1", "", &["--once"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let r = w.only_result(n);
    assert_eq!(r.status, "succeeded", "{r:?}");
    assert_eq!(
        r.slurm.expect("the Slurm job").job_id,
        id,
        "a second job was submitted"
    );
    let jobs = c.cmd("scontrol", &["show", "job", "-o"]);
    assert_eq!(
        jobs.lines().filter(|l| l.contains("JobId=")).count(),
        1,
        "{jobs}"
    );
}
