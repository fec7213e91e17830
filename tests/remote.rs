//! Remote runs through GitHub, against the fake GitHub server: `labbook run --remote`,
//! `labbook runner` and `labbook sync` as real processes, a local bare git repo standing in
//! for the GitHub remote, and the test's own labbook binary as the "built" one.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use labbook::Store;
use labbook::model::RunId;
use labbook::remote::protocol::{
    self, Claim, ClaimState, CurvePoint, KIND_CLAIM, KIND_NOT_ALLOWED, KIND_RESULTS, Results,
};
use labbook::store::{RunFilter, RunStatus};
use labbook_testkit::fake::Faults;

mod remote_world;
use remote_world::*;

#[test]
fn end_to_end_request_run_sync() {
    let w = world();
    let out = w.labbook("alice", ALICE_TOKEN, &["add", "experiment", "scan"]);
    assert!(out.status.success(), "{}", text(&out));
    let n = w.request("alice", ALICE_TOKEN, &["--experiment", "E-1"]);
    {
        let s = w.fake.state();
        let issue = s.issue(n);
        assert_eq!(issue.user, "alice");
        assert_eq!(issue.labels, vec!["run-request"]);
        let body = issue.body.as_deref().unwrap();
        let req: protocol::RunRequest =
            protocol::parse_block(protocol::KIND_REQUEST, body).unwrap();
        assert_eq!(req.commit, w.sha);
        assert_eq!(req.backend, "cpu");
        assert_eq!(req.experiment.as_deref(), Some("E-1"));
        assert!(req.config.contains("induction-heads"));
    }
    let r = w.alice_store().get_run(RunId(1)).unwrap();
    assert_eq!(r.status, RunStatus::QueuedRemote);
    assert_eq!(r.git_commit.as_deref(), Some(w.sha.as_str()));

    // Before the runner: sync leaves it waiting.
    let out = w.sync_alice();
    assert!(text(&out).contains("still waiting"), "{}", text(&out));
    assert_eq!(
        w.alice_store().get_run(RunId(1)).unwrap().status,
        RunStatus::QueuedRemote
    );

    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("results posted"), "{}", text(&out));
    {
        let s = w.fake.state();
        let issue = s.issue(n);
        assert_eq!(issue.state, "closed");
        assert!(
            issue.labels.contains(&"done".to_string()),
            "{:?}",
            issue.labels
        );
    }
    let result = w.only_result(n);
    let res = &result;
    assert_eq!(res.status, "succeeded", "{:?}", res.error);
    assert_eq!(res.commit, w.sha);
    assert_eq!(res.steps_done, 5);
    // The claim comment ends as "finished", and was the status comment.
    let claims = w.claims(n);
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].state, ClaimState::Finished);
    // The runner checked out exactly the requested commit.
    let co = w.dir.path().join("gpu-1/work/checkouts/issue-1");
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), w.sha);

    let out = w.sync_alice();
    assert!(text(&out).contains("R-1: succeeded"), "{}", text(&out));
    let store = w.alice_store();
    let run = store.get_run(RunId(1)).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(
        run.experiment.map(|e| e.to_string()).as_deref(),
        Some("E-1")
    );
    assert_eq!(run.steps_done, 5);
    assert!(run.host.is_some() && run.started_at.is_some() && run.finished_at.is_some());
    assert_eq!(run.final_metrics, res.final_metrics);
    assert!(
        run.final_metrics.contains_key("loss"),
        "{:?}",
        run.final_metrics
    );
    let loss = store.metric_series(RunId(1), "loss").unwrap();
    assert_eq!(loss.len(), 5, "{loss:?}");
    assert_eq!(loss.last().unwrap().0, 5);
    assert_eq!(
        store.metric_keys(RunId(1)).unwrap(),
        res.curves.keys().cloned().collect::<Vec<_>>()
    );
    // The run-request issue did not become a notebook item; sync again changes nothing.
    let out = w.labbook("alice", ALICE_TOKEN, &["list", "--json"]);
    assert!(!text(&out).contains("Run request"), "{}", text(&out));
    w.sync_alice();
    assert_eq!(
        w.alice_store()
            .metric_series(RunId(1), "loss")
            .unwrap()
            .len(),
        5
    );
    // The run is listed like a local one.
    let out = w.labbook("alice", ALICE_TOKEN, &["runs"]);
    assert!(text(&out).contains("succeeded"), "{}", text(&out));
    let out = w.labbook("alice", ALICE_TOKEN, &["show", "R-1"]);
    assert!(
        text(&out).contains(&format!("remote request {REPO}#{n}")),
        "{}",
        text(&out)
    );
}

#[test]
fn unpushed_dirty_or_unconfigured_requests_are_refused() {
    let w = world();
    // A local commit that was never pushed.
    std::fs::write(w.src.join("model.txt"), "new idea\n").unwrap();
    git(&w.src, &["add", "model.txt"]);
    git(&w.src, &["commit", "--quiet", "-m", "unpushed"]);
    let out = w.labbook(
        "alice",
        ALICE_TOKEN,
        &["run", "configs/smoke.toml", "--remote"],
    );
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("not on GitHub") && msg.contains("git push"),
        "{msg}"
    );
    assert_eq!(msg.trim().lines().count(), 1, "{msg}");
    // A dirty tree (tracked file changed).
    std::fs::write(w.src.join("README.md"), "changed\n").unwrap();
    let out = w.labbook(
        "alice",
        ALICE_TOKEN,
        &["run", "configs/smoke.toml", "--remote"],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("uncommitted changes"), "{}", text(&out));
    // An unknown experiment.
    git(&w.src, &["checkout", "--quiet", "README.md"]);
    git(&w.src, &["reset", "--quiet", "--hard", &w.sha]);
    let out = w.labbook(
        "alice",
        ALICE_TOKEN,
        &["run", "configs/smoke.toml", "--remote", "-e", "E-9"],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("E-9"), "{}", text(&out));
    // No [github] section.
    let bare = w.dir.path().join("bare.toml");
    std::fs::write(&bare, "[user]\nname = \"alice\"\n").unwrap();
    let out = w
        .cmd("alice", ALICE_TOKEN)
        .env("LABBOOK_CONFIG", &bare)
        .args(["run", "configs/smoke.toml", "--remote"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("[github]"), "{}", text(&out));
    // Nothing was written: no issue, no run.
    assert!(w.fake.state().issues.is_empty());
    let db = w.home("alice").join("tracker.db");
    if db.exists() {
        let runs = w.alice_store().list_runs(&RunFilter::default()).unwrap();
        assert!(runs.is_empty(), "{runs:?}");
    }
    // Pushed again (registered in the fake), the same request goes through.
    let n = w.request("alice", ALICE_TOKEN, &[]);
    assert_eq!(n, 1);
    // Cancelling it here closes its request on GitHub (runners only look there), with a
    // comment saying who cancelled it.
    let out = w.labbook("alice", ALICE_TOKEN, &["cancel", "R-1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("closed its request {REPO}#1")),
        "{}",
        text(&out)
    );
    assert_eq!(w.fake.state().issue(1).state, "closed");
    assert!(
        w.comments(1)
            .iter()
            .any(|c| c.contains("Cancelled by alice with `labbook cancel R-1`")),
        "{:?}",
        w.comments(1)
    );
    assert_eq!(
        w.alice_store().get_run(RunId(1)).unwrap().status,
        RunStatus::Cancelled
    );
}

#[test]
fn requests_by_authors_not_allowed_are_not_run() {
    let w = world();
    let n = w.request("mallory", MALLORY_TOKEN, &[]);
    assert_eq!(w.fake.state().issue(n).user, "mallory");
    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("refused"), "{}", text(&out));
    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("0 run"), "{}", text(&out));
    let comments = w.comments(n);
    let polite: Vec<&String> = comments
        .iter()
        .filter(|c| c.contains(&format!("<!-- labbook:{KIND_NOT_ALLOWED} ")))
        .collect();
    assert_eq!(polite.len(), 1, "{comments:?}");
    assert!(polite[0].contains("@mallory"));
    assert_eq!(comments.len(), 1, "no claim, no results: {comments:?}");
    assert_eq!(w.fake.state().issue(n).state, "open");
    assert!(!w.dir.path().join("gpu-1/work/jobs/issue-1").exists());
    assert!(!w.dir.path().join("gpu-1/work/checkouts/issue-1").exists());
}

#[test]
fn two_runners_racing_run_each_request_exactly_once() {
    let w = world();
    let issues: Vec<u64> = (0..3)
        .map(|_| w.request("alice", ALICE_TOKEN, &[]))
        .collect();
    // Slow answers widen the window in which both runners see the requests unclaimed.
    w.fake.set_faults(Faults {
        delay: Some(Duration::from_millis(40)),
        ..Default::default()
    });
    let a = w
        .runner_cmd("gpu-1", &["--once", "--parallel", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let b = w
        .runner_cmd("gpu-2", &["--once", "--parallel", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        text(&a),
        text(&b)
    );
    let mut ran_total = 0;
    for &n in &issues {
        let results = w.results(n);
        assert_eq!(results.len(), 1, "#{n}: {:?}", w.comments(n));
        assert_eq!(results[0].status, "succeeded");
        assert_eq!(w.fake.state().issue(n).state, "closed");
        // Exactly one claim is not withdrawn, and it is the one that ran.
        let claims = w.claims(n);
        let kept: Vec<&Claim> = claims
            .iter()
            .filter(|c| c.state != ClaimState::Withdrawn)
            .collect();
        assert_eq!(kept.len(), 1, "#{n}: {claims:?}");
        assert_eq!(kept[0].runner, results[0].runner);
        // Only the winner's workdir has a job for it.
        let jobs = ["gpu-1", "gpu-2"]
            .iter()
            .filter(|r| {
                w.dir
                    .path()
                    .join(format!("{r}/work/jobs/issue-{n}/tracker.db"))
                    .exists()
            })
            .count();
        assert_eq!(jobs, 1, "#{n}");
        ran_total += jobs;
    }
    assert_eq!(ran_total, 3);
}

#[test]
fn a_killed_runners_request_is_completed_by_another_after_its_lease() {
    let w = world();
    let n = w.request(
        "alice",
        ALICE_TOKEN,
        // Long enough (several seconds) that the first runner is seen training.
        &["--set", "train.steps=600", "--set", "train.eval_every=600"],
    );
    let first = w
        .runner_cmd("gpu-1", &["--once"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it is training (its status comment shows a step), then kill -9 it.
    wait_for(
        "the first runner to train",
        Duration::from_secs(120),
        || w.comments(n).iter().any(|c| c.contains("training, step")),
    );
    kill(first);
    let job_db = w.dir.path().join("gpu-1/work/jobs/issue-1/tracker.db");
    assert!(job_db.exists());
    // Its training child dies with it (no orphan keeps the GPU busy).
    let steps = || {
        Store::open(&job_db, "t")
            .unwrap()
            .get_run(RunId(1))
            .unwrap()
            .steps_done
    };
    std::thread::sleep(Duration::from_secs(1));
    let steps_at_kill = steps();
    std::thread::sleep(Duration::from_secs(3));
    let steps_later = steps();
    assert_eq!(
        steps_at_kill, steps_later,
        "the orphaned training kept going"
    );
    assert!(w.results(n).is_empty());
    // Renewals stopped with the kill; once the lease (5 s, generous for a loaded machine)
    // has run out, the second runner takes the request.
    wait_for("the first claim to expire", Duration::from_secs(30), || {
        !w.claimed(n)
    });
    let out = w.runner_once("gpu-2");
    assert!(text(&out).contains("results posted"), "{}", text(&out));
    let result = w.only_result(n);
    assert_eq!(result.runner, "gpu-2");
    assert_eq!(result.status, "succeeded", "{:?}", result.error);
    assert_eq!(result.steps_done, 600);
    assert_eq!(w.fake.state().issue(n).state, "closed");
    // And it comes back to alice.
    w.sync_alice();
    let run = w.alice_store().get_run(RunId(1)).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.steps_done, 600);
}

#[test]
fn results_larger_than_a_comment_round_trip_downsampled() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    // A long run: 20 curves of 30,000 points is megabytes of JSON.
    let curves: std::collections::BTreeMap<String, Vec<CurvePoint>> = (0..20)
        .map(|k| {
            (
                format!("metric/{k:02}"),
                (1..=30_000i64)
                    .map(|s| (s, Some(k as f64 + 1.0 / s as f64), s as f64 * 0.05))
                    .collect(),
            )
        })
        .collect();
    let full = Results {
        v: 2,
        runner: "gpu-big".into(),
        nonce: Some("big".into()),
        status: "succeeded".into(),
        error: None,
        commit: w.sha.clone(),
        backend: "cpu".into(),
        host: Some("gpu-box".into()),
        device: Some("cuda:0".into()),
        started_at: Some("2026-01-01T00:00:00.000Z".into()),
        finished_at: Some("2026-01-01T00:25:00.000Z".into()),
        wall_time_s: 1500.0,
        steps_done: 30_000,
        steps_total: Some(30_000),
        final_metrics: std::collections::BTreeMap::from([("metric/00".into(), 3.3e-5)]),
        points: curves.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
        resumed_from: None,
        weights: None,
        weights_error: None,
        slurm: None,
        curves,
    };
    assert!(serde_json::to_string(&full).unwrap().len() > 10 * protocol::MAX_COMMENT);
    let body = protocol::results_comment(&full, None);
    assert!(body.chars().count() <= protocol::MAX_COMMENT);
    // Posted the way a runner posts it (the fake enforces GitHub's limit), under its claim.
    let claim = Claim {
        runner: "gpu-big".into(),
        nonce: "big".into(),
        lease_until: "2026-01-01T00:25:00.000Z".into(),
        state: ClaimState::Finished,
        lease_secs: Some(600),
    };
    w.fake.state().add_comment(
        n,
        &protocol::hidden_block(KIND_CLAIM, &claim),
        "labbook-bot",
    );
    w.fake.state().add_comment(n, &body, "labbook-bot");
    w.sync_alice();
    let store = w.alice_store();
    let run = store.get_run(RunId(1)).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.host.as_deref(), Some("gpu-box"));
    assert_eq!(run.final_metrics["metric/00"], 3.3e-5);
    assert_eq!(store.metric_keys(RunId(1)).unwrap().len(), 20);
    for k in 0..20 {
        let s = store
            .metric_series(RunId(1), &format!("metric/{k:02}"))
            .unwrap();
        assert!(s.len() >= 50 && s.len() < 30_000, "{k}: {}", s.len());
        assert_eq!(s.first().unwrap().0, 1);
        assert_eq!(s.last().unwrap().0, 30_000);
        // Values survive (to 6 significant digits).
        let (step, v) = s[s.len() / 2];
        let want = k as f64 + 1.0 / step as f64;
        assert!((v - want).abs() <= want * 1e-5, "{v} vs {want}");
    }
}

#[test]
fn a_failed_build_is_reported_with_its_log_and_comes_back_failed() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    let out = w
        .runner_cmd_building(
            "gpu-1",
            r#"["sh", "-c", "echo 'error[E0425]: cannot find value' >&2; exit 3"]"#,
            &["--once"],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let result = w.only_result(n);
    assert_eq!(result.status, "failed");
    let err = result.error.clone().unwrap();
    assert!(
        err.contains("build failed") && err.contains("exit 3"),
        "{err}"
    );
    let comment = w.results_comment(n);
    assert!(
        comment.contains("log tail") && comment.contains("E0425"),
        "{comment}"
    );
    w.assert_failed_and_synced(n, "build failed");
}

#[test]
fn a_stopped_runner_gives_its_request_back_at_once() {
    let w = world();
    let n = w.request(
        "alice",
        ALICE_TOKEN,
        &[
            "--set",
            "train.steps=50000",
            "--set",
            "train.eval_every=50000",
        ],
    );
    let runner = w
        .runner_cmd("gpu-1", &[])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    w.wait_training(n);
    let out = terminate(runner);
    assert!(text(&out).contains("given up"), "{}", text(&out));
    // The claim is withdrawn (not left to expire), nothing was posted, the issue is open.
    assert!(!w.claimed(n));
    let claims = w.claims(n);
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].state, ClaimState::Withdrawn);
    assert!(w.results(n).is_empty());
    assert_eq!(w.fake.state().issue(n).state, "open");
}

/// The default build: `cargo build --release` in the checkout, into the runner's shared
/// target directory, and the built `target/release/labbook` (copied per job) runs the config.
/// The pushed commit is a tiny crate whose `labbook` binary hands over to the real one, so
/// the test builds in seconds and offline.
#[test]
fn the_default_build_compiles_the_commit_and_runs_its_binary() {
    let w = world();
    std::fs::create_dir_all(w.src.join("src")).unwrap();
    std::fs::write(
        w.src.join("Cargo.toml"),
        "[package]\nname = \"labbook\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        w.src.join("src/main.rs"),
        format!(
            "fn main() {{\n    let status = std::process::Command::new({BIN:?})\n        \
             .args(std::env::args_os().skip(1))\n        .status()\n        .expect(\"real labbook\");\n    \
             std::process::exit(status.code().unwrap_or(1));\n}}\n"
        ),
    )
    .unwrap();
    git(&w.src, &["add", "."]);
    let sha = commit_and_push(&w, "a crate", "refs/heads/main");

    let n = w.request("alice", ALICE_TOKEN, &[]);
    let out = w
        .runner_cmd_config("gpu-1", "", &["--once"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let work = w.dir.path().join("gpu-1/work");
    assert!(
        work.join("target/release/labbook").is_file(),
        "built into the shared target"
    );
    assert!(
        work.join(format!("jobs/issue-{n}/labbook")).is_file(),
        "the job ran its own copy"
    );
    let result = w.only_result(n);
    assert_eq!(result.status, "succeeded", "{:?}", result.error);
    assert_eq!(result.commit, sha);

    w.sync_alice();
    let store = w.alice_store();
    let run = store.get_run(RunId(1)).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert!(!store.metric_series(RunId(1), "loss").unwrap().is_empty());
}

/// On a public repo anyone can comment: a stranger's claim must not block a request, and a
/// stranger's results must neither close it nor reach the requester's notebook.
#[test]
fn claims_and_results_from_people_without_write_access_are_ignored() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    let forever = "2999-01-01T00:00:00.000Z";
    let claim = protocol::hidden_block(
        KIND_CLAIM,
        &Claim {
            runner: "mallory-box".into(),
            nonce: "0".into(),
            lease_until: forever.into(),
            state: ClaimState::Active,
            lease_secs: None,
        },
    );
    let forged = serde_json::json!({
        "v": 1, "runner": "mallory-box", "status": "succeeded", "error": null,
        "commit": w.sha, "backend": "cpu", "host": "nowhere", "device": null,
        "started_at": null, "finished_at": null, "wall_time_s": 1.0, "steps_done": 999,
        "steps_total": 999, "final_metrics": {"loss": 123.0}, "curves": {}, "points": {}
    });
    let results = protocol::hidden_block(KIND_RESULTS, &forged);
    {
        let mut s = w.fake.state();
        s.add_comment(n, &format!("mine\n{claim}"), "mallory");
        s.add_comment(n, &format!("done!\n{results}"), "mallory");
    }
    // Before any runner: alice's sync does not take the forged results.
    w.sync_alice();
    assert_eq!(
        w.alice_store().get_run(RunId(1)).unwrap().status,
        RunStatus::QueuedRemote
    );
    // The runner is not blocked by the stranger's "live" claim, and runs the request.
    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("claimed"), "{}", text(&out));
    let by_runner: Vec<String> = w
        .fake
        .state()
        .comments_on(n)
        .iter()
        .filter(|c| c.user == "labbook-bot")
        .map(|c| c.body.clone())
        .collect();
    assert!(
        by_runner
            .iter()
            .any(|b| b.contains("<!-- labbook:results ")),
        "the runner posted its own results"
    );
    w.sync_alice();
    let run = w.alice_store().get_run(RunId(1)).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_ne!(run.steps_done, 999, "not the forged results");
    assert_ne!(run.host.as_deref(), Some("nowhere"));
}

/// `run --remote` loses GitHub's answer to its POST (here: the network goes after the
/// commit check). The run stays queued-remote without an issue; the next `labbook sync`
/// attaches the issue if GitHub created it after all, and marks the run failed once the
/// request can no longer arrive.
#[test]
fn a_request_whose_filing_was_not_confirmed_is_settled_by_sync() {
    let w = world();
    let mut requests = Vec::new();
    for _ in 0..2 {
        let count = w.fake.state().request_count() as u64;
        w.fake.set_faults(Faults {
            cut_after: Some(count + 1),
            ..Default::default()
        });
        let out = w.labbook(
            "alice",
            ALICE_TOKEN,
            &["run", "configs/smoke.toml", "--remote"],
        );
        assert!(!out.status.success());
        assert!(text(&out).contains("stays queued-remote"), "{}", text(&out));
        w.fake.set_faults(Faults::default());
        requests.push(std::time::Instant::now());
    }
    let store = w.alice_store();
    for id in [RunId(1), RunId(2)] {
        assert_eq!(store.get_run(id).unwrap().status, RunStatus::QueuedRemote);
        assert_eq!(
            labbook::remote::request::remote_ref(&store, id)
                .unwrap()
                .issue,
            None
        );
    }
    assert!(w.fake.state().issues.is_empty(), "no POST got through");
    // GitHub created R-1's issue after all (a late-processed request).
    let id = labbook::remote::request::remote_ref(&store, RunId(1))
        .unwrap()
        .request;
    let req = protocol::RunRequest {
        v: 1,
        id,
        run: "R-1".into(),
        commit: w.sha.clone(),
        backend: "cpu".into(),
        config: std::fs::read_to_string(w.src.join("configs/smoke.toml")).unwrap(),
        config_path: Some("configs/smoke.toml".into()),
        experiment: None,
        experiment_issue: None,
        requester: "alice".into(),
        gpus: None,
    };
    let (title, body) = labbook::remote::request::request_issue(&req);
    let n = w
        .fake
        .state()
        .create_issue(&title, &body, &[protocol::LABEL_REQUEST], "alice");
    // Wait until R-2's request could no longer land (2 × timeout_secs + 1 s).
    let settle = Duration::from_secs(2 * 5 + 2);
    std::thread::sleep(settle.saturating_sub(requests[1].elapsed()));
    let out = w.sync_alice();
    assert!(
        text(&out).contains(&format!("found its request issue #{n}")),
        "{}",
        text(&out)
    );
    let store = w.alice_store();
    let r2 = store.get_run(RunId(2)).unwrap();
    assert_eq!(r2.status, RunStatus::Failed);
    assert!(r2.error.unwrap().contains("never reached GitHub"));
    assert_eq!(
        labbook::remote::request::remote_ref(&store, RunId(1))
            .unwrap()
            .issue,
        Some(n)
    );
    // R-1 then runs and comes back like any request.
    w.runner_once("gpu-1");
    w.sync_alice();
    assert_eq!(
        w.alice_store().get_run(RunId(1)).unwrap().status,
        RunStatus::Succeeded
    );
}

/// A renewal that GitHub holds up (slow answers, retries) is abandoned before the lease
/// ends: the job is given up and its claim withdrawn within the lease, instead of the runner
/// waiting on the PATCH for minutes while the job trains on an expiring claim.
#[test]
fn a_renewal_held_up_by_github_gives_the_job_up_within_the_lease() {
    let w = world();
    let n = w.request(
        "alice",
        ALICE_TOKEN,
        &[
            "--set",
            "train.steps=50000",
            "--set",
            "train.eval_every=50000",
        ],
    );
    let log = w.dir.path().join("runner-out.txt");
    let mut runner = Reap(Some(
        w.runner_cmd("gpu-1", &[])
            .stdout(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ));
    w.wait_training(n);
    // Every answer now takes longer than the client's timeout (5 s, 4 retries): the old
    // runner sat in the renewal for ~25 s past its 5 s lease.
    w.fake.set_faults(Faults {
        delay: Some(Duration::from_secs(8)),
        ..Default::default()
    });
    let t = Instant::now();
    wait_for("the claim to be withdrawn", Duration::from_secs(18), || {
        w.claims(n).iter().any(|c| c.state == ClaimState::Withdrawn)
    });
    assert!(t.elapsed() < Duration::from_secs(16), "{:?}", t.elapsed());
    w.fake.set_faults(Faults::default());
    wait_for(
        "the give-up to be reported",
        Duration::from_secs(60),
        || std::fs::read_to_string(&log).is_ok_and(|s| s.contains("given up")),
    );
    terminate(runner.0.take().unwrap());
    let printed = std::fs::read_to_string(&log).unwrap();
    assert!(printed.contains("given up: the lease ran out"), "{printed}");
    assert!(w.results(n).is_empty(), "{printed}");
}

/// GitHub's commit API also answers for commits only a fork or a pull request has: the
/// runner runs only commits on a branch of the configured repo, and never puts a request's
/// "commit" anywhere before checking it is a full SHA.
#[test]
fn commits_off_the_repos_branches_or_not_shas_are_refused() {
    let w = world();
    // A commit the API knows (pushed) but that is only on a pull request's ref.
    std::fs::write(w.src.join("README.md"), "from a fork\n").unwrap();
    git(&w.src, &["add", "."]);
    commit_and_push(&w, "fork only", "refs/pull/1/head");
    let n = w.request("alice", ALICE_TOKEN, &[]);
    // A forged request whose "commit" is not a SHA.
    let forged = {
        let mut s = w.fake.state();
        let body = s.issue(n).body.clone().unwrap();
        let mut req: protocol::RunRequest =
            protocol::parse_block(protocol::KIND_REQUEST, &body).unwrap();
        req.commit = "main~1".into();
        let body = protocol::hidden_block(protocol::KIND_REQUEST, &req);
        s.create_issue("Run request (forged)", &body, &["run-request"], "alice")
    };
    w.runner_once("gpu-1");
    let result = w.only_result(n);
    assert_eq!(result.status, "failed");
    let err = result.error.clone().unwrap();
    assert!(err.contains("not on any branch"), "{err}");
    assert!(
        !w.dir
            .path()
            .join("gpu-1/work/checkouts/issue-1/README.md")
            .exists(),
        "checked out"
    );
    let result = w.only_result(forged);
    assert_eq!(result.status, "failed");
    let err = result.error.clone().unwrap();
    assert!(err.contains("not a full commit SHA"), "{err}");
    let s = w.fake.state();
    assert!(
        s.log
            .iter()
            .all(|(_, target, _)| !target.contains("main~1")),
        "{:?}",
        s.log
    );
    assert_eq!(s.issue(forged).state, "closed");
}

/// The token reaches neither git, the build nor the run (their environment is cleaned),
/// nor `/proc/<runner>/environ` for a same-user job (the runner is not dumpable), nor any
/// file the runner writes.
#[test]
fn jobs_cannot_read_the_runners_token() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    let env_dump = w.dir.path().join("build-env.txt");
    let proc_dump = w.dir.path().join("runner-environ.txt");
    let build = format!(
        "[\"sh\", \"-c\", \"env > '{}'; cat /proc/$PPID/environ > '{}' 2>/dev/null; true\"]",
        env_dump.display(),
        proc_dump.display()
    );
    let out = w
        .runner_cmd_building("gpu-1", &build, &["--once"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(RUNNER_TOKEN));
    let result = w.only_result(n);
    assert_eq!(result.status, "succeeded", "{:?}", result.error);
    let env = std::fs::read_to_string(&env_dump).unwrap();
    assert!(env.contains("PATH="), "{env}");
    assert!(!env.contains(RUNNER_TOKEN), "{env}");
    assert!(
        !env.contains("GITHUB_TOKEN") && !env.contains("GH_TOKEN"),
        "{env}"
    );
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        // (root reads any process's environ: nothing to check there.)
        let environ = std::fs::read(&proc_dump).unwrap_or_default();
        assert!(environ.is_empty(), "the job read the runner's environ");
    }
    // No file the runner (or anyone in this test) wrote holds the token.
    let mut stack = vec![w.dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !(root && p == proc_dump) {
                let bytes = std::fs::read(&p).unwrap_or_default();
                assert!(
                    !bytes
                        .windows(RUNNER_TOKEN.len())
                        .any(|win| win == RUNNER_TOKEN.as_bytes()),
                    "token in {}",
                    p.display()
                );
            }
        }
    }
}

/// The job's notebook belongs to the checked-out commit's labbook: the runner reads it
/// read-only, so a newer schema than its own is read (not refused) and nothing is migrated.
#[test]
fn a_job_notebook_with_a_newer_schema_is_read_without_migrating() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        eprintln!("no sqlite3 CLI; skipped");
        return;
    }
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    // "The commit's labbook": the real one, whose notebook then claims a future schema.
    let bin = w.dir.path().join("future-labbook.sh");
    std::fs::write(
        &bin,
        format!("#!/bin/sh\n{BIN:?} \"$@\"\nrc=$?\nsqlite3 \"$2\" 'PRAGMA user_version = 99;'\nexit $rc\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = w
        .runner_cmd_config(
            "gpu-1",
            &format!("build = [\"true\"]\nbin = \"{}\"\n", bin.display()),
            &["--once"],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let result = w.only_result(n);
    assert_eq!(result.status, "succeeded", "{:?}", result.error);
    assert_eq!(result.steps_done, 5);
    assert!(result.final_metrics.contains_key("loss"));
    assert!(!result.curves["loss"].is_empty());
    let db = w
        .dir
        .path()
        .join(format!("gpu-1/work/jobs/issue-{n}/tracker.db"));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 99, "the job's notebook was touched");
}

/// Commits what is staged in Alice's checkout, pushes it to `dst` of `origin.git`, and
/// makes the fake's commit API know it; returns its SHA.
fn commit_and_push(w: &World, message: &str, dst: &str) -> String {
    git(&w.src, &["commit", "--quiet", "-m", message]);
    let origin = w.dir.path().join("origin.git");
    git(
        &w.src,
        &[
            "push",
            "--quiet",
            origin.to_str().unwrap(),
            &format!("HEAD:{dst}"),
        ],
    );
    let sha = git(&w.src, &["rev-parse", "HEAD"]);
    w.fake.state().push_commit(&sha);
    sha
}

/// GitHub's comment list can lag behind its writes: a rival runner's earlier claim is
/// missing from the lists right after this runner posts its own. The runner looks again
/// after a pause, sees the rival, and withdraws instead of running the request twice.
#[test]
fn a_claim_is_confirmed_by_a_second_read_when_lists_lag() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    let lease_until = (chrono::Utc::now() + chrono::TimeDelta::minutes(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let rival = protocol::hidden_block(
        KIND_CLAIM,
        &Claim {
            runner: "gpu-2".into(),
            nonce: "rival".into(),
            lease_until,
            state: ClaimState::Active,
            lease_secs: Some(600),
        },
    );
    {
        let mut s = w.fake.state();
        // Another runner account with write access claimed first...
        let id = s.add_comment(n, &format!("claimed\n{rival}"), "gpu-bot-2");
        // ...but the first two comment lists (the look before claiming and the re-read
        // after it) do not show that claim yet.
        s.stale_lists = Some((id, 2));
    }
    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("withdrew"), "{}", text(&out));
    assert!(w.results(n).is_empty(), "the request was not run");
    let ours: Vec<Claim> = w
        .claims(n)
        .into_iter()
        .filter(|c| c.runner == "gpu-1")
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].state, ClaimState::Withdrawn);
}

// ---- Trust (docs/remote-runs.md, "Threat model"): one end-to-end test per threat.

/// A collaborator copies a real results comment from another request onto an unclaimed
/// one. Neither `sync` nor a runner takes it: results count only under the winning claim's
/// nonce, from that claim's author.
#[test]
fn results_copied_from_another_request_are_not_accepted() {
    let w = world();
    let first = w.request("alice", ALICE_TOKEN, &[]);
    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("results posted"), "{}", text(&out));
    let second = w.request("alice", ALICE_TOKEN, &[]);
    let copied = w.results_comment(first);
    // Alice has write access (COLLABORATOR), but never claimed the second request.
    w.fake.state().add_comment(second, &copied, "alice");
    w.sync_alice();
    let store = w.alice_store();
    assert_eq!(
        store.get_run(RunId(1)).unwrap().status,
        RunStatus::Succeeded
    );
    assert_eq!(
        store.get_run(RunId(2)).unwrap().status,
        RunStatus::QueuedRemote,
        "the copied results were imported"
    );
    drop(store);
    // The runner is not fooled either: it does not close the request, it runs it.
    assert_eq!(w.fake.state().issue(second).state, "open");
    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("results posted"), "{}", text(&out));
    let results = w.results(second);
    assert_eq!(results.len(), 2, "the copy and the real results");
    assert_ne!(results[0].nonce, results[1].nonce);
    w.sync_alice();
    assert_eq!(
        w.alice_store().get_run(RunId(2)).unwrap().status,
        RunStatus::Succeeded
    );
}

/// With `[github] runners` set, claims and results from any other login are ignored by
/// runners and by sync, even from people with write access who post both.
#[test]
fn pinned_runner_accounts_alone_claim_and_report() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    let claim = Claim {
        runner: "alice-laptop".into(),
        nonce: "alices".into(),
        lease_until: "2999-01-01T00:00:00.000Z".into(),
        state: ClaimState::Active,
        lease_secs: Some(30 * 86_400),
    };
    let forged = serde_json::json!({
        "v": 2, "runner": "alice-laptop", "nonce": "alices", "status": "succeeded",
        "error": null, "commit": w.sha, "backend": "cpu", "host": "nowhere", "device": null,
        "started_at": null, "finished_at": null, "wall_time_s": 1.0, "steps_done": 999,
        "steps_total": 999, "final_metrics": {"loss": 123.0}, "curves": {}, "points": {}
    });
    {
        let mut s = w.fake.state();
        s.add_comment(n, &protocol::hidden_block(KIND_CLAIM, &claim), "alice");
        s.add_comment(n, &protocol::hidden_block(KIND_RESULTS, &forged), "alice");
    }
    let pin = "runners = [\"labbook-bot\"]\n";
    let cfg = w.home("alice").join("labbook.toml");
    let mut text_cfg = std::fs::read_to_string(&cfg).unwrap();
    text_cfg.push_str(pin);
    std::fs::write(&cfg, text_cfg).unwrap();
    w.sync_alice();
    assert_eq!(
        w.alice_store().get_run(RunId(1)).unwrap().status,
        RunStatus::QueuedRemote
    );
    let out = w
        .runner_cmd_full(
            "gpu-1",
            pin,
            &format!("build = [\"true\"]\nbin = \"{BIN}\"\n"),
            &["--once"],
        )
        .output()
        .unwrap();
    assert!(text(&out).contains("results posted"), "{}", text(&out));
    w.sync_alice();
    let run = w.alice_store().get_run(RunId(1)).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_ne!(run.steps_done, 999);
}

/// A collaborator who is not on the allow-list edits an allowed author's request (the
/// hidden block does not show on GitHub's page): the runner refuses it and says why. Once
/// the author has edited it last, it runs.
#[test]
fn a_request_edited_by_someone_not_allowed_is_refused() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    let body = w.fake.state().issue(n).body.clone().unwrap();
    let evil = body.replace("steps = ", "steps =  ");
    assert_ne!(evil, body);
    w.fake.state().edit_body(n, &evil, "bob");
    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("refused"), "{}", text(&out));
    assert!(w.claims(n).is_empty() && w.results(n).is_empty());
    let refusals: Vec<String> = w
        .comments(n)
        .into_iter()
        .filter(|c| c.contains("<!-- labbook:refused "))
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0].contains("last edited by @bob") && refusals[0].contains("allow-list"),
        "{}",
        refusals[0]
    );
    // Asked again, it does not repeat itself.
    w.runner_once("gpu-1");
    assert_eq!(
        w.comments(n)
            .iter()
            .filter(|c| c.contains("<!-- labbook:refused "))
            .count(),
        1
    );
    // The author puts her text back: it runs.
    w.fake.state().edit_body(n, &body, "alice");
    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("results posted"), "{}", text(&out));
    assert_eq!(w.results(n)[0].status, "succeeded");
}

/// Git, the build and the job see a cleared environment plus the allow-list and
/// `[runner] env`: a secret in the runner's environment does not reach a job's log.
#[test]
fn jobs_get_a_cleared_environment_plus_the_allow_list() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    let out = w
        .runner_cmd_config(
            "gpu-1",
            &format!(
                "build = [\"sh\", \"-c\", \"env; exit 3\"]\nbin = \"{BIN}\"\nenv = [\"KEEP_ME\"]\n"
            ),
            &["--once"],
        )
        .env("LEAKY_SECRET", "s3cr3t-value")
        .env("KEEP_ME", "kept-value")
        .env("LC_LABBOOK_TEST", "lc-value")
        .env("CUDA_LABBOOK_TEST", "cuda-value")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let results = w.results(n);
    assert_eq!(results[0].status, "failed");
    let comment = w.results_comment(n);
    for kept in [
        "KEEP_ME=kept-value",
        "LC_LABBOOK_TEST=lc-value",
        "CUDA_LABBOOK_TEST=cuda-value",
        "PATH=",
    ] {
        assert!(comment.contains(kept), "{kept} missing: {comment}");
    }
    for gone in [
        "s3cr3t-value",
        "LEAKY_SECRET",
        "LABBOOK_LOG_FILE",
        RUNNER_TOKEN,
    ] {
        assert!(!comment.contains(gone), "{gone} reached the job: {comment}");
    }
}

/// A job over `[runner] max_job_time` is stopped (SIGTERM, then SIGKILL) and reported
/// failed with the reason; the request is labelled and closed. The build runs behind
/// `[runner] wrap`.
#[test]
fn a_job_over_max_job_time_is_stopped_and_reported_failed() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    let started = Instant::now();
    let out = w
        .runner_cmd_config(
            "gpu-1",
            &format!(
                "build = [\"sh\", \"-c\", \"echo building; sleep 120\"]\nbin = \"{BIN}\"\n\
                 max_job_time = \"2s\"\n\
                 wrap = [\"sh\", \"-c\", \"echo WRAPPED-BY-$0; exec \\\"$@\\\"\", \"wrapper\"]\n"
            ),
            &["--once"],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "not stopped: {:?}",
        started.elapsed()
    );
    let result = w.only_result(n);
    assert_eq!(result.status, "failed");
    let error = result.error.clone().unwrap_or_default();
    assert!(error.contains("max_job_time"), "{error}");
    let comment = w.results_comment(n);
    assert!(
        comment.contains("WRAPPED-BY-wrapper") && comment.contains("building"),
        "{comment}"
    );
    w.assert_failed_and_synced(n, "max_job_time");
}

/// Closing a request on GitHub stops its job at the next renewal; it is reported
/// cancelled.
#[test]
fn closing_a_request_stops_its_job_and_reports_it_cancelled() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    let runner = w
        .runner_cmd_building("gpu-1", "[\"sh\", \"-c\", \"sleep 120\"]", &["--once"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the job to build", Duration::from_secs(60), || {
        w.comments(n).iter().any(|c| c.contains("Status: building"))
    });
    let closed_at = Instant::now();
    w.fake.state().issue_mut(n).state = "closed".into();
    let out = runner.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        closed_at.elapsed() < Duration::from_secs(40),
        "{:?}",
        closed_at.elapsed()
    );
    let result = w.only_result(n);
    assert_eq!(result.status, "cancelled");
    assert!(
        result.error.as_deref().unwrap_or("").contains("closed"),
        "{:?}",
        result.error
    );
    w.sync_alice();
    assert_eq!(
        w.alice_store().get_run(RunId(1)).unwrap().status,
        RunStatus::Cancelled
    );
}

/// Leases are judged on GitHub's clock: a runner whose own clock is two hours ahead does
/// not take over another runner's live claim, and the lease it writes is on GitHub's time.
#[test]
fn a_runner_with_a_wrong_clock_cannot_take_over_a_live_claim() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    // GitHub's clock is two hours behind this machine's (the runner's clock is wrong).
    let github_now = {
        let mut s = w.fake.state();
        s.clock_offset_secs = -7200;
        chrono::Utc::now() - chrono::TimeDelta::hours(2)
    };
    let rival = Claim {
        runner: "gpu-2".into(),
        nonce: "rival".into(),
        lease_until: (github_now + chrono::TimeDelta::minutes(10))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        state: ClaimState::Active,
        lease_secs: Some(600),
    };
    w.fake.state().add_comment(
        n,
        &format!("claimed\n{}", protocol::hidden_block(KIND_CLAIM, &rival)),
        "gpu-bot-2",
    );
    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("0 run"), "{}", text(&out));
    assert!(
        w.claims(n).iter().all(|c| c.runner != "gpu-1"),
        "took over a live claim: {:?}",
        w.claims(n)
    );
    // The other way round (GitHub ahead): the claim's lease text is on GitHub's time.
    w.fake.state().clock_offset_secs = 7200;
    let m = w.request("alice", ALICE_TOKEN, &[]);
    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("results posted"), "{}", text(&out));
    let ours = w
        .claims(m)
        .into_iter()
        .find(|c| c.runner == "gpu-1")
        .unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(&ours.lease_until).unwrap();
    assert!(
        until > chrono::Utc::now() + chrono::TimeDelta::minutes(90),
        "lease written on the local clock: {until}"
    );
}

/// Thousands of comments on a request do not make every renewal read them all: listings
/// stop after a bounded number of pages, and renewals ask only for comments since the
/// claim.
#[test]
fn a_comment_flood_does_not_make_renewals_read_every_comment() {
    let w = world();
    let n = w.request("alice", ALICE_TOKEN, &[]);
    {
        let mut s = w.fake.state();
        // An hour ago: a flood that was there before the claim.
        let then = (chrono::Utc::now() - chrono::TimeDelta::hours(1))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        for k in 0..1_500 {
            let id = s.add_comment(n, &format!("spam {k}"), "mallory");
            let c = s.comments.iter_mut().find(|c| c.id == id).unwrap();
            c.created_at = then.clone();
            c.updated_at = then.clone();
        }
        s.log.clear();
    }
    let out = w
        .runner_cmd_building("gpu-1", "[\"sh\", \"-c\", \"sleep 3\"]", &["--once"])
        .output()
        .unwrap();
    assert!(text(&out).contains("results posted"), "{}", text(&out));
    let gets: Vec<String> = w
        .fake
        .state()
        .log
        .iter()
        .filter(|l| l.0 == "GET" && l.1.contains(&format!("/issues/{n}/comments")))
        .map(|l| l.1.clone())
        .collect();
    // One listing: a first page, then the pages it follows.
    let mut listings: Vec<Vec<String>> = Vec::new();
    for g in gets {
        if g.contains("&page=") {
            listings.last_mut().unwrap().push(g);
        } else {
            listings.push(vec![g]);
        }
    }
    assert!(
        listings.iter().all(|l| l.len() <= 10),
        "a listing read past the page bound: {listings:?}"
    );
    let renewals: Vec<&Vec<String>> = listings
        .iter()
        .filter(|l| l[0].contains("since="))
        .collect();
    assert!(
        !renewals.is_empty(),
        "renewals list everything: {listings:?}"
    );
    assert!(
        renewals.iter().all(|l| l.len() == 1),
        "renewals read the old flood: {renewals:?}"
    );
}

/// `runner --gpus 0,1` (parallel defaults to 2): two 1-GPU jobs run at once with distinct
/// `CUDA_VISIBLE_DEVICES`; a job asking for 2 GPUs (implied by its config's `devices`)
/// waits until both are free, then sees both and its devices renumbered from `cuda:0`. The
/// job is a script that prints what it was given.
#[test]
fn gpus_are_handed_out_per_job_and_a_two_gpu_job_waits_for_two() {
    use std::os::unix::fs::PermissionsExt;
    let w = world();
    let script = w.dir.path().join("print-env.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"visible=[$CUDA_VISIBLE_DEVICES]\"\ngrep -E '^(backend|devices)' \"$6\"\n\
         echo \"start=$(date +%s.%N)\"\nsleep 2\necho \"end=$(date +%s.%N)\"\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let a = w.request("alice", ALICE_TOKEN, &["--backend", "cuda"]);
    let b = w.request("alice", ALICE_TOKEN, &["--backend", "cuda:1"]);
    let c = w.request(
        "alice",
        ALICE_TOKEN,
        &[
            "--backend",
            "cuda",
            "--set",
            "train.devices=[\"cuda:2\", \"cuda:3\"]",
        ],
    );
    let runner = w
        .runner_cmd_config(
            "gpu-1",
            &format!("build = [\"true\"]\nbin = \"{}\"\n", script.display()),
            &["--backend", "cuda", "--gpus", "0,1", "--once"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut runner = Reap(Some(runner));
    // The two-GPU job's status comment names its GPUs while it runs.
    wait_for("the 2-GPU job's status", Duration::from_secs(60), || {
        w.comments(c)
            .iter()
            .any(|b| b.contains("on GPUs 0,1 (CUDA_VISIBLE_DEVICES)"))
    });
    let mut r = runner.0.take().unwrap();
    wait_for("the runner to finish", Duration::from_secs(60), || {
        r.try_wait().unwrap().is_some()
    });
    let out = r.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let field = |comment: &str, key: &str| -> String {
        let at = comment.find(&format!("{key}=")).unwrap_or_else(|| {
            panic!("no {key}= in {comment}");
        }) + key.len()
            + 1;
        comment[at..].split_whitespace().next().unwrap().to_string()
    };
    let time = |comment: &str, key: &str| field(comment, key).parse::<f64>().unwrap();
    let (ca, cb, cc) = (
        w.results_comment(a),
        w.results_comment(b),
        w.results_comment(c),
    );
    let (va, vb) = (field(&ca, "visible"), field(&cb, "visible"));
    let mut singles = [va.clone(), vb.clone()];
    singles.sort();
    assert_eq!(singles, ["[0]", "[1]"], "{ca}\n{cb}");
    // Concurrent: each started before the other ended.
    assert!(
        time(&ca, "start") < time(&cb, "end") && time(&cb, "start") < time(&ca, "end"),
        "the 1-GPU jobs did not overlap:\n{ca}\n{cb}"
    );
    assert_eq!(field(&cc, "visible"), "[0,1]", "{cc}");
    let both_done = time(&ca, "end").max(time(&cb, "end"));
    assert!(
        time(&cc, "start") >= both_done,
        "the 2-GPU job started before 2 GPUs were free:\n{cc}"
    );
    // Renumbered: the job's config names the GPUs as the job sees them.
    assert!(
        cc.contains(r#"devices = ["cuda:0", "cuda:1"]"#) && cc.contains(r#"backend = "cuda:0""#),
        "{cc}"
    );
    assert!(cb.contains(r#"backend = "cuda:0""#), "{cb}");
}

/// A request given back by a stopped runner (its job was sent SIGTERM and wrote a final
/// checkpoint) and claimed again on the same machine continues from that checkpoint rather
/// than from step 0; the results say so.
#[test]
fn a_request_claimed_again_resumes_from_this_machines_checkpoint() {
    let w = world();
    let n = w.request(
        "alice",
        ALICE_TOKEN,
        &[
            "--set",
            "train.steps=1200",
            "--set",
            "train.eval_every=1200",
        ],
    );
    let runner = w
        .runner_cmd("gpu-1", &[])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let runner = Reap(Some(runner));
    let step_of = |c: &str| -> Option<u64> {
        let at = c.find("training, step ")? + "training, step ".len();
        c[at..].split('/').next()?.parse().ok()
    };
    wait_for("twenty steps", Duration::from_secs(120), || {
        w.comments(n)
            .iter()
            .any(|c| step_of(c).is_some_and(|s| s >= 20))
    });
    let mut runner = runner;
    let out = terminate(runner.0.take().unwrap());
    assert!(text(&out).contains("given up"), "{}", text(&out));
    assert!(w.results(n).is_empty());
    // The same machine (the same workdir) takes the request again.
    w.runner_once("gpu-1");
    let r = w.only_result(n);
    assert_eq!(r.status, "succeeded", "{r:?}");
    assert_eq!(r.steps_done, 1200);
    let from = r.resumed_from.expect("the results say it resumed");
    assert!((20..1200).contains(&from), "resumed from step {from}");
    let comment = w.results_comment(n);
    assert!(
        comment.contains(&format!("Resumed from step {from}")),
        "{comment}"
    );
    // The loss curve has the steps of both attempts, each once.
    let loss = &r.curves["loss"];
    let steps: Vec<i64> = loss.iter().map(|p| p.0).collect();
    assert_eq!(steps.first(), Some(&1));
    assert_eq!(steps.last(), Some(&1200));
    assert!(steps.windows(2).all(|s| s[0] < s[1]), "{steps:?}");
    w.sync_alice();
    let run = w.alice_store().get_run(RunId(1)).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
}

/// `run --remote --sweep`: one request per point of the grid, each with its point's
/// config, all in one sweep under the experiment; a grid with a bad point files nothing.
#[test]
fn a_remote_sweep_files_one_request_per_point() {
    let w = world();
    let out = w.labbook("alice", ALICE_TOKEN, &["add", "experiment", "lr sweep"]);
    assert!(out.status.success(), "{}", text(&out));
    let bad = w.labbook(
        "alice",
        ALICE_TOKEN,
        &[
            "run",
            "configs/smoke.toml",
            "--remote",
            "--sweep",
            "train.lr=1e-3,-1",
        ],
    );
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(
        w.fake.state().issues.is_empty(),
        "a bad grid filed requests"
    );
    let out = w.labbook(
        "alice",
        ALICE_TOKEN,
        &[
            "run",
            "configs/smoke.toml",
            "--remote",
            "-e",
            "E-1",
            "--sweep",
            "train.lr=1e-3,3e-4",
            "--sweep",
            "train.seed=0,1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let requests: Vec<protocol::RunRequest> = w
        .fake
        .state()
        .issues
        .iter()
        .map(|i| protocol::parse_block(protocol::KIND_REQUEST, i.body.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(requests.len(), 4);
    let mut points: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            let cfg = labbook_models::RunConfig::parse(&r.config, "request").unwrap();
            assert_eq!(r.experiment.as_deref(), Some("E-1"));
            (format!("{}", cfg.train.lr), cfg.train.seed.to_string())
        })
        .collect();
    points.sort();
    assert_eq!(
        points,
        [
            ("0.0003".to_string(), "0".to_string()),
            ("0.0003".into(), "1".into()),
            ("0.001".into(), "0".into()),
            ("0.001".into(), "1".into()),
        ]
    );
    let store = w.alice_store();
    let runs: Vec<_> = (1..=4).map(|i| store.get_run(RunId(i)).unwrap()).collect();
    assert!(runs.iter().all(|r| r.status == RunStatus::QueuedRemote));
    let sweep = runs[0].sweep.clone().expect("a sweep id");
    assert!(
        runs.iter()
            .all(|r| r.sweep.as_deref() == Some(sweep.as_str()))
    );
    assert!(
        runs.iter()
            .any(|r| r.name.as_deref() == Some("smoke lr=3e-4 seed=1")),
        "{:?}",
        runs.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
    );
}

/// The runner uploads a finished run's weights and full-resolution curves as one asset of
/// the `labbook-runs` release; the results link it; `pull-model R-n` downloads it into
/// `runs/R-1/`, replaces the downsampled curves, and the weights start a new run
/// (`train.init_from`).
#[test]
fn weights_travel_as_a_release_asset_and_pull_model_fetches_them() {
    let w = world();
    // Enough steps that the results comment downsamples the curves.
    let n = w.request(
        "alice",
        ALICE_TOKEN,
        &[
            "--set",
            "train.steps=1500",
            "--set",
            "train.eval_every=1500",
        ],
    );
    let out = w.runner_once("gpu-1");
    assert!(text(&out).contains("weights uploaded"), "{}", text(&out));
    let r = w.only_result(n);
    assert_eq!(r.status, "succeeded", "{r:?}");
    let asset = r.weights.clone().expect("the results name the asset");
    assert_eq!(asset.release, "labbook-runs");
    assert_eq!(asset.name, format!("request-{n}.tar"));
    {
        let s = w.fake.state();
        assert_eq!(s.releases.len(), 1);
        let a = &s.releases[0].assets[0];
        assert_eq!((a.id, a.data.len() as u64), (asset.id, asset.size));
        assert_eq!(
            a.uploader, "labbook-bot",
            "uploaded by the runner's account"
        );
    }
    assert!(w.results_comment(n).contains(&asset.url));
    assert!(
        r.points["loss"] > r.curves["loss"].len(),
        "the comment's curve should be downsampled for this test to mean something: {:?}",
        r.points
    );
    w.sync_alice();
    let downsampled = w.alice_store().metric_series(RunId(1), "loss").unwrap();
    assert!(downsampled.len() < 1500, "{}", downsampled.len());

    let out = w.labbook("alice", ALICE_TOKEN, &["pull-model", "R-1"]);
    assert!(out.status.success(), "{}", text(&out));
    let model = w.home("alice").join("runs/R-1/model.safetensors");
    assert!(model.is_file(), "{}", text(&out));
    let full = w.alice_store().metric_series(RunId(1), "loss").unwrap();
    assert_eq!(
        full.iter().map(|p| p.0).collect::<Vec<_>>(),
        (1..=1500).collect::<Vec<_>>()
    );
    // The downloaded weights load into the same model.
    let out = w.labbook(
        "alice",
        ALICE_TOKEN,
        &[
            "run",
            "configs/smoke.toml",
            "--set",
            &format!("train.init_from={}", model.display()),
            "--set",
            "train.steps=2",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // A run that was not remote, or has no asset, is refused by name.
    let out = w.labbook("alice", ALICE_TOKEN, &["pull-model", "R-2"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("R-2 was not run remotely"),
        "{}",
        text(&out)
    );
}
