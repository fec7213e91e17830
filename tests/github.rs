//! GitHub sync scenarios against the fake GitHub server (real HTTP on 127.0.0.1).
//! Each ends by checking: no duplicate issues or comments, and no lost edit. The last ones
//! cover the "Lab notebook" page issue.
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use labbook::Store;
use labbook::config::GithubConfig;
use labbook::github::{Field, Resolution, SyncOptions, SyncReport, Token, sync_with};
use labbook::model::{ItemId, ItemPatch, Kind, NewItem, Relation};
use labbook::store::{ListFilter, MetricPoint, NewRun, RunStatus};
use labbook_testkit::fake::{FakeGithub, Faults};

const TOKEN: &str = "ghp_FAKEsecretTOKEN0123456789";
const REPO: &str = "lab/notebook";

struct World {
    fake: FakeGithub,
    _dir: tempfile::TempDir,
    store: Store,
    cfg: GithubConfig,
}

fn world() -> World {
    let fake = FakeGithub::start(REPO, TOKEN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("tracker.db"), "ada").unwrap();
    let mut cfg = GithubConfig::new(REPO, &fake.url());
    // These scenarios count the items' issues and requests; the notebook page has its own
    // (tests/notebook_page.rs).
    cfg.notebook = false;
    cfg.write_interval_ms = 0;
    cfg.timeout_secs = 5;
    cfg.retries = 6;
    World {
        fake,
        _dir: dir,
        store,
        cfg,
    }
}

impl World {
    fn sync(&mut self) -> labbook::Result<SyncReport> {
        self.sync_opts(None)
    }

    fn sync_opts(&mut self, max_requests: Option<u64>) -> labbook::Result<SyncReport> {
        sync_with(
            &mut self.store,
            &self.cfg,
            &Token::new(TOKEN).unwrap(),
            &SyncOptions {
                backoff: Some(Duration::from_millis(5)),
                max_requests,
            },
        )
    }

    fn add(&mut self, kind: Kind, title: &str) -> ItemId {
        self.store.add_item(NewItem::new(kind, title)).unwrap().id
    }

    fn issue_of(&self, id: ItemId) -> u64 {
        self.store.sync_state(id).unwrap().expect("synced").issue as u64
    }

    fn item_for_issue(&self, number: u64) -> ItemId {
        self.store
            .list(&ListFilter {
                include_archived: true,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .find(|i| {
                self.store
                    .sync_state(i.id)
                    .unwrap()
                    .is_some_and(|s| s.issue as u64 == number)
            })
            .expect("an item for the issue")
            .id
    }

    /// No item has two issues, no local comment was posted twice, no remote comment
    /// was imported twice, and after a clean sync both sides hold the same comments.
    fn assert_no_duplicates(&self) {
        let s = self.fake.state();
        let mut markers: HashMap<String, usize> = HashMap::new();
        for i in s.issues.iter().filter(|i| !i.is_pr) {
            if let Some(id) = i
                .body
                .as_deref()
                .and_then(labbook::github::render::parse_marker)
            {
                *markers.entry(id.to_string()).or_default() += 1;
            }
        }
        for (id, n) in &markers {
            assert_eq!(*n, 1, "{id} has {n} issues");
        }
        let mut cmarkers: HashMap<i64, usize> = HashMap::new();
        for c in &s.comments {
            if let Some(id) = labbook::github::render::parse_comment_marker(&c.body) {
                *cmarkers.entry(id).or_default() += 1;
            }
        }
        for (id, n) in &cmarkers {
            assert_eq!(*n, 1, "local comment {id} posted {n} times");
        }
        let items = self.store.list(&ListFilter::default()).unwrap();
        for it in items {
            let Some(st) = self.store.sync_state(it.id).unwrap() else {
                continue;
            };
            let local = self.store.comments(it.id).unwrap().len();
            let remote = s.comments_on(st.issue as u64).len();
            assert_eq!(local, remote, "comments of {} vs #{}", it.id, st.issue);
        }
        let imported: i64 = self
            .store
            .conn()
            .query_row(
                "SELECT count(*) - count(DISTINCT remote_id) FROM gh_comments WHERE remote_id IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(imported, 0, "a remote comment is mapped twice");
    }
}

#[test]
fn first_sync_goes_both_ways() {
    let mut w = world();
    let t1 = w
        .store
        .add_item(NewItem {
            tags: vec!["cuda".into()],
            fields: labbook::model::Fields {
                assignee: Some("bob".into()),
                ..Default::default()
            },
            body: "Port the scan.".into(),
            ..NewItem::new(Kind::Task, "Port the scan to CUDA")
        })
        .unwrap()
        .id;
    let i1 = w
        .store
        .add_item(NewItem {
            status: Some("rejected".into()),
            ..NewItem::new(Kind::Idea, "Dilated conv")
        })
        .unwrap()
        .id;
    let p1 = w
        .store
        .add_item(NewItem {
            fields: labbook::model::Fields {
                arxiv_id: Some("2312.00752".into()),
                year: Some(2023),
                ..Default::default()
            },
            ..NewItem::new(Kind::Paper, "Mamba")
        })
        .unwrap()
        .id;
    w.store.link(i1, p1, Some(Relation::MotivatedBy)).unwrap();
    w.store.comment(t1, "started on this").unwrap();
    let (remote_idea, pr) = {
        let mut s = w.fake.state();
        let n = s.create_issue(
            "Try bidirectional scan",
            "From the reading group.",
            &["idea", "Good First Issue"],
            "alice",
        );
        s.add_comment(n, "I can take it", "carol");
        (n, s.create_pr("Speed up the kernel"))
    };

    let r = w.sync().unwrap();
    assert_eq!(
        (r.created, r.imported, r.comments_in, r.comments_out),
        (3, 1, 1, 1),
        "{r:?}"
    );

    {
        let s = w.fake.state();
        let t = s.issue(w.issue_of(t1));
        assert_eq!(t.title, "Port the scan to CUDA");
        assert!(t.body.as_deref().unwrap().starts_with("Port the scan."));
        assert!(t.body.as_deref().unwrap().contains("<!-- labbook:T-1 -->"));
        assert!(t.labels.contains(&"task".into()) && t.labels.contains(&"cuda".into()));
        assert_eq!(t.assignees, vec!["bob".to_string()]);
        let i = s.issue(w.issue_of(i1));
        assert_eq!(i.state, "closed", "a rejected idea is a closed issue");
        assert!(
            i.body
                .as_deref()
                .unwrap()
                .contains("motivated-by P-1: Mamba")
        );
        let p = s.issue(w.issue_of(p1));
        assert!(
            p.body
                .as_deref()
                .unwrap()
                .contains("arxiv.org/abs/2312.00752")
        );
    }
    let imported = w.item_for_issue(remote_idea);
    assert_eq!(imported.kind, Kind::Idea);
    let item = w.store.get(imported).unwrap();
    assert_eq!(item.body, "From the reading group.");
    assert_eq!(item.tags, vec!["good-first-issue"]);
    assert_eq!(item.author, "alice (GitHub)");
    let c = w.store.comments(imported).unwrap();
    assert_eq!(c[0].author, "carol (GitHub)");
    assert!(
        w.store
            .list(&ListFilter::default())
            .unwrap()
            .iter()
            .all(|i| w.store.sync_state(i.id).unwrap().unwrap().issue as u64 != pr),
        "pull requests are skipped"
    );

    // A second sync finds nothing to do, and nothing is duplicated.
    let r = w.sync().unwrap();
    assert_eq!(
        (
            r.created,
            r.imported,
            r.pulled,
            r.pushed,
            r.comments_in,
            r.comments_out
        ),
        (0, 0, 0, 0, 0, 0),
        "{r:?}"
    );
    assert_eq!(w.store.sync_summary().unwrap().linked, 4);
    w.assert_no_duplicates();
}

#[test]
fn edits_on_both_sides_merge_field_by_field() {
    let mut w = world();
    let t1 = w.add(Kind::Task, "Sweep kernel sizes");
    w.sync().unwrap();
    let n = w.issue_of(t1);
    // Here: new title and a tag. There: new body, closed, a label, a comment.
    w.store
        .update(
            t1,
            &ItemPatch {
                title: Some("Sweep conv kernel sizes".into()),
                ..Default::default()
            },
        )
        .unwrap();
    w.store.retag(t1, &["mamba".into()], &[]).unwrap();
    {
        let mut s = w.fake.state();
        let i = s.issue_mut(n);
        i.body = Some(
            "Use 2, 4, 8.\r\n\r\n---\n<!-- labbook:footer -->\nold footer\n<!-- labbook:T-1 -->"
                .into(),
        );
        i.state = "closed".into();
        i.labels.push("urgent".into());
        s.add_comment(n, "done on the cluster", "bob");
    }
    let r = w.sync().unwrap();
    assert_eq!(r.conflicts, 0, "{r:?}");
    let item = w.store.get(t1).unwrap();
    assert_eq!(item.title, "Sweep conv kernel sizes");
    assert_eq!(item.body, "Use 2, 4, 8.");
    assert_eq!(item.status, "done");
    assert_eq!(item.tags, vec!["mamba", "urgent"]);
    {
        let s = w.fake.state();
        let i = s.issue(n);
        assert_eq!(i.title, "Sweep conv kernel sizes");
        assert_eq!(i.state, "closed");
        let mut labels = i.labels.clone();
        labels.sort();
        assert_eq!(labels, vec!["mamba", "task", "urgent"]);
        assert!(i.body.as_deref().unwrap().starts_with("Use 2, 4, 8."));
    }
    assert_eq!(
        w.store.sync_state(t1).unwrap().unwrap().status,
        labbook::github::SyncStatus::Synced
    );
    let r = w.sync().unwrap();
    assert_eq!((r.pulled, r.pushed), (0, 0), "{r:?}");
    w.assert_no_duplicates();
}

#[test]
fn same_field_on_both_sides_is_a_conflict_until_resolved() {
    let mut w = world();
    let t1 = w.add(Kind::Task, "Original");
    let t2 = w.add(Kind::Task, "Second");
    w.sync().unwrap();
    let (n1, n2) = (w.issue_of(t1), w.issue_of(t2));
    for (id, n, mine, theirs) in [
        (t1, n1, "Mine 1", "Theirs 1"),
        (t2, n2, "Mine 2", "Theirs 2"),
    ] {
        w.store
            .update(
                id,
                &ItemPatch {
                    title: Some(mine.into()),
                    ..Default::default()
                },
            )
            .unwrap();
        w.fake.state().issue_mut(n).title = theirs.into();
    }
    let r = w.sync().unwrap();
    assert_eq!(r.conflicts, 2, "{r:?}");
    // Neither side was overwritten, and a re-sync keeps it that way.
    w.sync().unwrap();
    assert_eq!(w.store.get(t1).unwrap().title, "Mine 1");
    assert_eq!(w.fake.state().issue(n1).title, "Theirs 1");
    let conflicts = w.store.conflicts().unwrap();
    assert_eq!(conflicts.len(), 2);
    assert_eq!(conflicts[0].base, "Original");
    assert_eq!(conflicts[0].mine, "Mine 1");
    assert_eq!(conflicts[0].theirs, "Theirs 1");
    assert_eq!(
        w.store.sync_state(t1).unwrap().unwrap().status,
        labbook::github::SyncStatus::Conflict
    );

    w.store
        .resolve_conflict(t1, Field::Title, Resolution::Mine)
        .unwrap();
    w.store
        .resolve_conflict(t2, Field::Title, Resolution::Theirs)
        .unwrap();
    assert!(
        w.store
            .resolve_conflict(t2, Field::Title, Resolution::Mine)
            .is_err()
    );
    w.sync().unwrap();
    assert_eq!(w.fake.state().issue(n1).title, "Mine 1");
    assert_eq!(w.store.get(t2).unwrap().title, "Theirs 2");
    assert_eq!(w.fake.state().issue(n2).title, "Theirs 2");

    // An edited value goes to both sides.
    w.store
        .update(
            t1,
            &ItemPatch {
                body: Some("a".into()),
                ..Default::default()
            },
        )
        .unwrap();
    w.fake.state().issue_mut(n1).body = Some("b".into());
    w.sync().unwrap();
    w.store
        .resolve_conflict(t1, Field::Body, Resolution::Value("a and b".into()))
        .unwrap();
    w.sync().unwrap();
    assert_eq!(w.store.get(t1).unwrap().body, "a and b");
    assert!(
        w.fake
            .state()
            .issue(n1)
            .body
            .as_deref()
            .unwrap()
            .starts_with("a and b")
    );
    assert!(w.store.conflicts().unwrap().is_empty());
    w.assert_no_duplicates();
}

#[test]
fn close_and_reopen_both_ways() {
    let mut w = world();
    let t1 = w.add(Kind::Task, "Close me");
    let e1 = w.add(Kind::Experiment, "Reopen me");
    w.sync().unwrap();
    let (nt, ne) = (w.issue_of(t1), w.issue_of(e1));
    w.store
        .update(
            t1,
            &ItemPatch {
                status: Some("done".into()),
                ..Default::default()
            },
        )
        .unwrap();
    w.fake.state().issue_mut(ne).state = "closed".into();
    w.sync().unwrap();
    assert_eq!(w.fake.state().issue(nt).state, "closed");
    assert_eq!(w.store.get(e1).unwrap().status, "done");
    // Reopen: here for the experiment, there for the task.
    w.store
        .update(
            e1,
            &ItemPatch {
                status: Some("running".into()),
                ..Default::default()
            },
        )
        .unwrap();
    w.fake.state().issue_mut(nt).state = "open".into();
    w.sync().unwrap();
    assert_eq!(w.fake.state().issue(ne).state, "open");
    assert_eq!(w.store.get(t1).unwrap().status, "todo");
    // A status change that keeps the issue open does not fight the issue state.
    w.store
        .update(
            t1,
            &ItemPatch {
                status: Some("doing".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let r = w.sync().unwrap();
    assert_eq!(w.fake.state().issue(nt).state, "open");
    assert_eq!(r.conflicts, 0);
    w.assert_no_duplicates();
}

#[test]
fn thousand_issues_resync_costs_two_requests() {
    let mut w = world();
    {
        let mut s = w.fake.state();
        for k in 0..1000 {
            let n = s.create_issue(&format!("Issue {k}"), "body", &["task"], "alice");
            // Spread over time as real issues are (GitHub timestamps have 1 s resolution).
            let at = format!(
                "2026-01-{:02}T{:02}:{:02}:00Z",
                1 + k / 600,
                (k / 60) % 10,
                k % 60
            );
            let i = s.issue_mut(n);
            i.created_at = at.clone();
            i.updated_at = at;
        }
    }
    let r = w.sync().unwrap();
    assert_eq!(r.imported, 1000);
    // 10 pages of 100 issues + 1 comment page.
    assert!(r.requests <= 12, "{} requests", r.requests);
    let paged: Vec<_> = w.fake.state().log.iter().map(|l| l.1.clone()).collect();
    assert!(
        paged
            .iter()
            .all(|p| !p.starts_with("/repos") || p.contains("per_page=100")),
        "{paged:?}"
    );
    let r = w.sync().unwrap();
    assert!(r.requests <= 2, "{} requests", r.requests);
    let before = w.fake.state().rate_remaining;
    let r = w.sync().unwrap();
    assert!(r.requests <= 2, "{} requests", r.requests);
    {
        let s = w.fake.state();
        let tail: Vec<u16> = s.log.iter().rev().take(2).map(|l| l.2).collect();
        assert_eq!(tail, vec![304, 304]);
        assert_eq!(s.rate_remaining, before, "304s do not use rate limit");
    }
    // A change on GitHub is still seen.
    w.fake.state().issue_mut(500).title = "Renamed".into();
    let r = w.sync().unwrap();
    assert_eq!(r.pulled, 1);
    assert_eq!(w.store.get(w.item_for_issue(500)).unwrap().title, "Renamed");
}

#[test]
fn killed_sync_resumes_without_duplicates() {
    let mut w = world();
    {
        let mut s = w.fake.state();
        for k in 0..250 {
            let n = s.create_issue(&format!("Remote {k}"), "", &[], "alice");
            if k % 50 == 0 {
                s.add_comment(n, "remote comment", "bob");
            }
        }
    }
    for k in 0..30 {
        let id = w.add(Kind::Idea, &format!("Local {k}"));
        if k % 10 == 0 {
            w.store.comment(id, "local comment").unwrap();
        }
    }
    // Killed after two requests: the first page is in, its cursor is saved.
    assert!(w.sync_opts(Some(2)).is_err());
    let done = w.store.sync_summary().unwrap().linked;
    assert!((100..250).contains(&done), "{done}");
    // Killed again in the middle of the creates.
    assert!(w.sync_opts(Some(20)).is_err());
    // A network cut in the middle of the next one.
    let n = w.fake.state().log.len() as u64;
    w.fake.set_faults(Faults {
        cut_after: Some(n + 10),
        ..Default::default()
    });
    assert!(w.sync().is_err());
    w.fake.set_faults(Faults::default());
    let r = w.sync().unwrap();
    assert!(r.imported + r.created > 0, "{r:?}");
    w.sync().unwrap();
    let s = w.store.sync_summary().unwrap();
    assert_eq!((s.linked, s.pending), (280, 0));
    assert_eq!(w.fake.state().issues.len(), 280);
    w.assert_no_duplicates();
}

#[test]
fn lost_answers_to_creates_never_duplicate() {
    let mut w = world();
    let ids: Vec<_> = (0..5)
        .map(|k| w.add(Kind::Task, &format!("T {k}")))
        .collect();
    for id in &ids {
        w.store.comment(*id, "hello").unwrap();
    }
    // Every write is applied but its answer is lost.
    w.fake.set_faults(Faults {
        drop_after_write_rate: 1.0,
        ..Default::default()
    });
    let _ = w.sync();
    w.fake.set_faults(Faults::default());
    let r = w.sync().unwrap();
    assert_eq!(r.created, 0, "{:?}", (r.adopted, r.created));
    let s = w.fake.state();
    let posts = |suffix: &str| {
        s.log
            .iter()
            .filter(|l| l.0 == "POST" && l.1.ends_with(suffix))
            .count()
    };
    // Each create and each comment was sent exactly once: a lost answer is followed
    // by a marker lookup, never by a blind retry.
    assert_eq!(posts("/issues"), 5);
    assert_eq!(posts("/comments"), 5);
    assert_eq!(s.issues.len(), 5);
    assert_eq!(s.comments.len(), 5);
    drop(s);
    w.assert_no_duplicates();
}

#[test]
fn twenty_percent_faults_converge() {
    let mut w = world();
    {
        let mut s = w.fake.state();
        for k in 0..40 {
            let n = s.create_issue(&format!("Remote {k}"), "text", &[], "alice");
            s.add_comment(n, "remote comment", "bob");
        }
    }
    let local: Vec<_> = (0..20)
        .map(|k| w.add(Kind::Task, &format!("Local {k}")))
        .collect();
    for id in &local {
        w.store.comment(*id, "local comment").unwrap();
    }
    w.fake.set_faults(Faults {
        error_rate: 0.1,
        drop_rate: 0.05,
        drop_after_write_rate: 0.05,
        ..Default::default()
    });
    let mut ok = false;
    for _ in 0..15 {
        if w.sync().is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "sync never got through a 20% fault rate");
    // Edits on both sides under faults, too.
    w.store
        .update(
            local[0],
            &ItemPatch {
                title: Some("Edited here".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let n5 = w.issue_of(local[5]);
    w.fake.state().issue_mut(n5).title = "Edited there".into();
    for _ in 0..15 {
        if w.sync().is_ok() {
            break;
        }
    }
    w.fake.set_faults(Faults::default());
    w.sync().unwrap();
    assert_eq!(
        w.fake.state().issue(w.issue_of(local[0])).title,
        "Edited here"
    );
    assert_eq!(w.store.get(local[5]).unwrap().title, "Edited there");
    assert_eq!(w.fake.state().issues.len(), 60);
    assert_eq!(w.fake.state().comments.len(), 60);
    w.assert_no_duplicates();
}

#[test]
fn rate_limits_are_waited_out() {
    let mut w = world();
    for k in 0..3 {
        w.add(Kind::Task, &format!("T {k}"));
    }
    {
        let mut s = w.fake.state();
        s.rate_remaining = 0;
        s.rate_reset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 2;
        s.faults.secondary_every = Some(4);
    }
    let r = w.sync().unwrap();
    assert_eq!(r.created, 3);
    let s = w.fake.state();
    assert!(s.log.iter().any(|l| l.2 == 403), "primary limit hit");
    assert!(s.log.iter().any(|l| l.2 == 429), "secondary limit hit");
    drop(s);
    w.assert_no_duplicates();
}

#[test]
fn huge_bodies_are_truncated_not_rejected() {
    let mut w = world();
    let body = "long line of notes\n".repeat(5000); // 95,000 characters
    let id = w
        .store
        .add_item(NewItem {
            body: body.clone(),
            ..NewItem::new(Kind::Idea, "Big")
        })
        .unwrap()
        .id;
    let c = w.add(Kind::Task, "Comment target");
    w.store.comment(c, &"x".repeat(70_000)).unwrap();
    let r = w.sync().unwrap();
    assert_eq!(r.created, 2);
    let n = w.issue_of(id);
    {
        let s = w.fake.state();
        let b = s.issue(n).body.clone().unwrap();
        assert!(b.chars().count() <= 65_536);
        assert!(b.contains("full text is in labbook as I-1"));
    }
    let r = w.sync().unwrap();
    assert_eq!((r.pushed, r.pulled), (0, 0), "{r:?}");
    assert_eq!(
        w.store.get(id).unwrap().body,
        body,
        "the full text stays here"
    );
    // An edit of the truncated copy on GitHub is not pulled over the full text.
    {
        let mut s = w.fake.state();
        let i = s.issue_mut(n);
        let b = i.body.clone().unwrap();
        i.body = Some(format!("edited {b}"));
    }
    w.sync().unwrap();
    assert_eq!(w.store.get(id).unwrap().body, body);
    assert_eq!(w.store.conflicts().unwrap().len(), 1);
}

#[test]
fn slow_answers_and_timeouts() {
    let mut w = world();
    w.add(Kind::Task, "Slow");
    w.fake.set_faults(Faults {
        delay: Some(Duration::from_millis(150)),
        ..Default::default()
    });
    assert_eq!(w.sync().unwrap().created, 1);
    // Slower than the timeout: a clear error, nothing changed here.
    w.cfg.timeout_secs = 1;
    w.cfg.retries = 1;
    w.fake.set_faults(Faults {
        delay: Some(Duration::from_millis(1500)),
        ..Default::default()
    });
    w.add(Kind::Task, "Never sent");
    let err = w.sync().unwrap_err().to_string();
    assert!(err.contains("cannot reach"), "{err}");
    assert_eq!(w.store.sync_summary().unwrap().linked, 1);
}

#[test]
fn run_summary_reaches_the_experiment_issue_once() {
    let mut w = world();
    let e = w.add(Kind::Experiment, "Conv sweep");
    let run = w
        .store
        .create_run(&labbook::store::NewRun {
            experiment: Some(e),
            config: "{\"lr\": 0.001}".into(),
            ..Default::default()
        })
        .unwrap();
    w.store
        .finish_run(
            run,
            labbook::store::RunStatus::Succeeded,
            &[("loss".to_string(), 0.5)].into_iter().collect(),
            None,
        )
        .unwrap();
    labbook::github::post_run_summary(&mut w.store, run).unwrap();
    labbook::github::post_run_summary(&mut w.store, run).unwrap();
    w.sync().unwrap();
    w.sync().unwrap();
    let n = w.issue_of(e);
    let s = w.fake.state();
    let c = s.comments_on(n);
    assert_eq!(c.len(), 1);
    assert!(c[0].body.contains("| loss | 0.5 |"), "{}", c[0].body);
}

#[test]
fn bad_token_is_one_clear_error_and_changes_nothing() {
    let mut w = world();
    w.add(Kind::Task, "Stay local");
    let err = sync_with(
        &mut w.store,
        &w.cfg,
        &Token::new("ghp_wrongWRONGwrong").unwrap(),
        &SyncOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains("wrongWRONG"), "{err}");
    assert_eq!(err.lines().count(), 1);
    assert_eq!(w.store.sync_summary().unwrap().linked, 0);
    assert!(w.fake.state().issues.is_empty());
}

#[test]
fn one_sync_at_a_time_and_stale_locks_are_taken_over() {
    let mut w = world();
    w.add(Kind::Task, "T");
    let now = labbook::store::now();
    let lock = |w: &World, pid: &str| {
        w.store
            .conn()
            .execute(
                "INSERT OR REPLACE INTO gh_state (repo, key, value) VALUES (?1, 'lock', ?2)",
                [REPO.to_string(), format!("{pid} {now}")],
            )
            .unwrap();
    };
    lock(&w, "1"); // pid 1 is alive: another sync holds the lock
    let err = w.sync().unwrap_err().to_string();
    assert!(err.contains("another sync"), "{err}");
    assert!(w.fake.state().log.is_empty(), "nothing was sent");
    lock(&w, "999999999"); // a killed sync
    assert_eq!(w.sync().unwrap().created, 1);
    // Released after a sync, also after a failed one.
    assert!(w.sync_opts(Some(0)).is_err());
    assert_eq!(w.sync().unwrap().created, 0);
}

#[test]
fn an_item_github_refuses_does_not_block_the_rest() {
    let mut w = world();
    let bad = w.add(Kind::Task, "REJECT me");
    let good = w.add(Kind::Task, "Fine");
    w.fake.state().reject_titles_with = Some("REJECT".into());
    let r = w.sync().unwrap();
    assert_eq!(r.created, 1);
    assert_eq!(r.skipped.len(), 1);
    assert!(r.skipped[0].starts_with("T-1: "), "{:?}", r.skipped);
    assert!(w.store.sync_state(bad).unwrap().is_none());
    assert!(w.store.sync_state(good).unwrap().is_some());
    assert_eq!(w.store.sync_summary().unwrap().pending, 0);
    w.fake.state().reject_titles_with = None;
    assert_eq!(w.sync().unwrap().created, 1);
    w.assert_no_duplicates();
}

#[test]
fn a_deleted_issue_does_not_block_the_rest() {
    let mut w = world();
    let gone = w.add(Kind::Task, "Will be deleted on GitHub");
    let kept = w.add(Kind::Task, "Kept");
    w.sync().unwrap();
    let n = w.issue_of(gone);
    w.fake.state().delete_issue(n);
    w.store
        .update(
            gone,
            &ItemPatch {
                title: Some("Edited".into()),
                ..Default::default()
            },
        )
        .unwrap();
    w.store.comment(gone, "into the void").unwrap();
    w.store
        .update(
            kept,
            &ItemPatch {
                title: Some("Kept, edited".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let r = w.sync().unwrap();
    assert_eq!(r.pushed, 1, "{:?}", r.skipped);
    assert_eq!(r.skipped.len(), 2, "{:?}", r.skipped);
    assert_eq!(w.fake.state().issue(w.issue_of(kept)).title, "Kept, edited");
}

#[test]
fn enterprise_api_prefix_and_comment_pagination() {
    let mut w = world();
    w.cfg.api_url = format!("{}/api/v3", w.fake.url());
    let t = w.add(Kind::Task, "Busy thread");
    w.sync().unwrap();
    let n = w.issue_of(t);
    {
        let mut s = w.fake.state();
        for k in 0..230 {
            s.add_comment(n, &format!("remote {k}"), "bob");
        }
    }
    for k in 0..3 {
        w.store.comment(t, &format!("local {k}")).unwrap();
    }
    let r = w.sync().unwrap();
    assert_eq!((r.comments_in, r.comments_out), (230, 3));
    assert!(
        w.fake
            .state()
            .log
            .iter()
            .any(|l| l.1.starts_with("/api/v3/repos/") && l.1.contains("page=3"))
    );
    let r = w.sync().unwrap();
    assert_eq!((r.comments_in, r.comments_out), (0, 0));
    w.assert_no_duplicates();
}

// ---- Trust: what strangers on GitHub can and cannot do (docs/github.md, "Threat model").

/// A stranger files an issue carrying a private paper's marker. Sync must neither link it
/// to P-1 (which would push the paper's text onto the stranger's issue) nor pull the
/// stranger's edits into P-1; it says so once.
#[test]
fn a_strangers_issue_with_an_item_marker_is_ignored_and_reported_once() {
    let mut w = world();
    w.cfg.kinds = vec![Kind::Task, Kind::Idea];
    let p1 = w
        .store
        .add_item(NewItem {
            body: "CONFIDENTIAL: unpublished results".into(),
            ..NewItem::new(Kind::Paper, "Our draft")
        })
        .unwrap()
        .id;
    let t1 = w.add(Kind::Task, "Public task");
    w.sync().unwrap();
    let stranger = {
        let mut s = w.fake.state();
        s.create_issue(
            "Please link me",
            &format!("hello\n\n{}", labbook::github::render::marker(p1)),
            &[],
            "mallory",
        )
    };
    // The same trick with a synced kind, and with the marker quoted mid-text.
    let quoted = w.fake.state().create_issue(
        "Quote",
        &format!("see {} above", labbook::github::render::marker(t1)),
        &[],
        "mallory",
    );
    let r = w.sync().unwrap();
    assert!(
        r.ignored
            .contains(&format!("ignored #{stranger}: marker P-1 from @mallory")),
        "{r:?}"
    );
    assert!(
        r.ignored
            .contains(&format!("ignored #{quoted}: marker T-1 from @mallory")),
        "{r:?}"
    );
    assert_eq!((r.adopted, r.imported, r.pushed), (0, 0, 0), "{r:?}");
    assert!(
        w.store.sync_state(p1).unwrap().is_none(),
        "P-1 stays private"
    );
    {
        let s = w.fake.state();
        let body = s.issue(stranger).body.clone().unwrap();
        assert!(!body.contains("CONFIDENTIAL"), "{body}");
        assert_ne!(w.issue_of(t1), quoted);
    }
    // The stranger edits the issue: nothing reaches P-1, and it is not reported again.
    w.fake.state().issue_mut(stranger).title = "Edited by mallory".into();
    let r = w.sync().unwrap();
    assert!(r.ignored.is_empty(), "{r:?}");
    let p = w.store.get(p1).unwrap();
    assert_eq!(p.title, "Our draft");
    assert_eq!(p.body, "CONFIDENTIAL: unpublished results");
    // A private kind is never created on GitHub, whatever happens.
    assert!(w.fake.state().issues_with("CONFIDENTIAL").is_empty());
}

/// The lost-answer case that adoption exists for still works, but only for our own
/// issue: a create that was interrupted after its intent was saved is not adopted onto a
/// stranger's issue carrying the marker; the real create happens instead.
#[test]
fn a_pending_create_is_never_adopted_onto_a_strangers_issue() {
    let mut w = world();
    let t1 = w.add(Kind::Task, "Port the scan");
    // Killed right before the POST: the intent is saved, nothing was created.
    assert!(w.sync_opts(Some(2)).is_err());
    assert_eq!(w.store.sync_summary().unwrap().pending, 1);
    assert!(w.fake.state().issues.is_empty());
    let stranger = w.fake.state().create_issue(
        "Port the scan",
        &format!("mine now\n\n{}", labbook::github::render::marker(t1)),
        &[],
        "mallory",
    );
    let r = w.sync().unwrap();
    assert_eq!((r.adopted, r.created), (0, 1), "{r:?}");
    let ours = w.issue_of(t1);
    assert_ne!(ours, stranger);
    assert_eq!(w.fake.state().issue(ours).user, "labbook-bot");
    assert_eq!(r.ignored.len(), 1, "{r:?}");
}

/// Only linked items of synced kinds are pushed: not archived ones, and not a kind taken
/// out of `[github] kinds` after it was synced.
#[test]
fn archived_items_and_unsynced_kinds_are_not_pushed() {
    let mut w = world();
    let t1 = w.add(Kind::Task, "Task");
    let p1 = w.add(Kind::Paper, "Paper");
    w.sync().unwrap();
    let (it, ip) = (w.issue_of(t1), w.issue_of(p1));
    w.cfg.kinds = vec![Kind::Task];
    w.store.archive(t1, true).unwrap();
    for id in [t1, p1] {
        w.store
            .update(
                id,
                &ItemPatch {
                    title: Some("private now".into()),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    w.store.comment(p1, "a private remark").unwrap();
    let r = w.sync().unwrap();
    assert_eq!((r.pushed, r.comments_out), (0, 0), "{r:?}");
    let s = w.fake.state();
    assert_eq!(s.issue(it).title, "Task");
    assert_eq!(s.issue(ip).title, "Paper");
    assert!(s.comments.is_empty());
}

/// A stranger's comment carrying our comment marker must not mark a local comment as
/// posted (it would then never reach GitHub); it is imported as their own comment.
#[test]
fn a_forged_comment_marker_does_not_stop_a_comment_from_being_posted() {
    let mut w = world();
    let t1 = w.add(Kind::Task, "Task");
    w.sync().unwrap();
    let n = w.issue_of(t1);
    w.store.comment(t1, "our real comment").unwrap();
    let local_id: i64 = w
        .store
        .conn()
        .query_row("SELECT max(id) FROM comments", [], |r| r.get(0))
        .unwrap();
    w.fake.state().add_comment(
        n,
        &format!(
            "nothing to see\n\n{}",
            labbook::github::render::comment_marker(local_id)
        ),
        "mallory",
    );
    let r = w.sync().unwrap();
    assert_eq!((r.comments_in, r.comments_out), (1, 1), "{r:?}");
    let s = w.fake.state();
    let posted: Vec<_> = s
        .comments_on(n)
        .into_iter()
        .filter(|c| c.user == "labbook-bot")
        .collect();
    assert_eq!(posted.len(), 1);
    assert!(posted[0].body.contains("our real comment"));
    drop(s);
    let here = w.store.comments(t1).unwrap();
    assert!(
        here.iter().any(|c| c.author == "mallory (GitHub)"),
        "{here:?}"
    );
}

/// Terminal escapes in GitHub text (an OSC 52 clipboard write, a screen clear, C1
/// controls) are dropped on import; newlines and tabs in bodies stay.
#[test]
fn control_characters_from_github_are_stripped_on_import() {
    let mut w = world();
    let n = w.fake.state().create_issue(
        "Evil \u{1b}]52;c;ZXZpbA==\u{7}title \u{1b}[2J",
        "line one\r\n\u{1b}[31mred\u{9b}0m\tcol\u{0}",
        &["task", "bad\u{1b}label"],
        "mallory\u{1b}[2J",
    );
    w.fake
        .state()
        .add_comment(n, "hi \u{1b}[2Jthere\nok", "carol\u{7}");
    w.sync().unwrap();
    let id = w.item_for_issue(n);
    let item = w.store.get(id).unwrap();
    let has_control = |s: &str| {
        s.chars().any(|c| {
            c != '\n' && c != '\t' && (c.is_control() || ('\u{80}'..='\u{9f}').contains(&c))
        })
    };
    assert!(!has_control(&item.title), "{:?}", item.title);
    assert_eq!(item.title, "Evil ]52;c;ZXZpbA==title [2J");
    assert!(!has_control(&item.body), "{:?}", item.body);
    assert!(
        item.body.contains("line one\n[31mred0m\tcol"),
        "{:?}",
        item.body
    );
    assert!(item.tags.iter().all(|t| !has_control(t)), "{:?}", item.tags);
    let comments = w.store.comments(id).unwrap();
    assert_eq!(comments.len(), 1);
    assert!(!has_control(&comments[0].body) && !has_control(&comments[0].author));
    assert!(comments[0].body.contains("there\nok"));
}

// The "Lab notebook" issue (`[github] notebook`): one page however often sync runs, edited
// in place when something changed and not written at all when nothing did, only the synced
// kinds on it, items linked to their issues, runs with a sparkline, GitHub edits
// overwritten, continuation comments past GitHub's size limit.

const PAGE: &str = "<!-- labbook:notebook -->";

/// A world whose syncs keep the notebook page.
fn page_world() -> World {
    let mut w = world();
    w.cfg.notebook = true;
    w
}

impl World {
    /// The page issues' (number, body).
    fn pages(&self) -> Vec<(u64, String)> {
        self.fake
            .state()
            .issues_with(PAGE)
            .iter()
            .map(|i| (i.number, i.body.clone().unwrap_or_default()))
            .collect()
    }

    fn page(&self) -> (u64, String) {
        let pages = self.pages();
        assert_eq!(pages.len(), 1, "exactly one notebook page");
        pages[0].clone()
    }

    /// POSTs and PATCHes the fake has answered so far.
    fn writes(&self) -> usize {
        self.fake
            .state()
            .log
            .iter()
            .filter(|(m, _, _)| m == "POST" || m == "PATCH")
            .count()
    }

    fn issue_titled(&self, title: &str) -> u64 {
        self.fake
            .state()
            .issues
            .iter()
            .find(|i| i.title == title)
            .unwrap_or_else(|| panic!("no issue titled {title}"))
            .number
    }
}

#[test]
fn one_page_updated_in_place_and_untouched_when_nothing_changed() {
    let mut w = page_world();
    let t = w.add(Kind::Task, "Write the scan kernel");
    let e = w.add(Kind::Experiment, "Conv kernel sweep");
    w.store
        .update(
            e,
            &ItemPatch {
                fields: vec![("hypothesis".into(), Some("kernel 8 beats 4".into()))],
                ..Default::default()
            },
        )
        .unwrap();
    let report = w.sync().unwrap();
    let (n, body) = w.page();
    assert_eq!(report.notebook_page, Some(n));
    assert!(body.contains("edits made here are overwritten"), "{body}");
    {
        let s = w.fake.state();
        assert_eq!(s.issue(n).title, "Lab notebook");
        assert_eq!(s.issue(n).labels, vec!["labbook-notebook"]);
        assert!(
            s.pinned.contains(&n),
            "the page is pinned: {:?}",
            report.events
        );
    }
    // Each item is linked to its own issue.
    let task_issue = w.issue_titled("Write the scan kernel");
    assert!(
        body.contains(&format!("{t} (#{task_issue}) · Write the scan kernel")),
        "{body}"
    );
    assert!(body.contains("**Hypothesis.** kernel 8 beats 4"), "{body}");
    // The page is not imported as an item.
    assert!(w.store.list(&Default::default()).unwrap().len() == 2);

    // Nothing changed: no write at all, still one page.
    let before = w.writes();
    let report = w.sync().unwrap();
    assert_eq!(w.writes(), before, "an unchanged sync wrote to GitHub");
    assert!(!report.page_updated);
    assert_eq!(w.page().0, n);

    // A change: the same issue is edited.
    w.store
        .update(
            t,
            &ItemPatch {
                status: Some("done".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let report = w.sync().unwrap();
    assert!(report.page_updated);
    let (n2, body) = w.page();
    assert_eq!(n2, n, "edited in place");
    let done = body.find("**done**").expect("a done group");
    assert!(body[done..].contains("Write the scan kernel"), "{body}");

    // An edit made on GitHub to the page is overwritten by the next sync.
    w.fake.state().edit_body(n, "vandalised", "mallory");
    w.sync().unwrap();
    let (_, body) = w.page();
    assert!(body.contains("Write the scan kernel"), "{body}");
}

#[test]
fn only_synced_kinds_appear_and_runs_have_a_sparkline() {
    let mut w = page_world();
    w.cfg.kinds = vec![Kind::Task, Kind::Experiment, Kind::Idea];
    w.add(Kind::Paper, "A private reading list entry");
    let idea = w.add(Kind::Idea, "Dilated convs");
    let e = w.add(Kind::Experiment, "Dilation sweep");
    w.store.link(idea, e, None).unwrap();
    let run = w
        .store
        .create_run(&NewRun {
            experiment: Some(e),
            name: Some("mamba-conv dilation=4".into()),
            config: String::new(),
            git_commit: Some("0123456789abcdef".into()),
            host: Some("gpu-box".into()),
            ..Default::default()
        })
        .unwrap();
    let points: Vec<MetricPoint> = (1..=40)
        .flat_map(|s| {
            [
                MetricPoint {
                    step: s,
                    key: "loss".into(),
                    value: 3.0 / s as f64,
                    wall_time: 0.0,
                },
                MetricPoint {
                    step: s,
                    key: "eval/acc@64".into(),
                    value: s as f64 / 50.0,
                    wall_time: 0.0,
                },
            ]
        })
        .collect();
    w.store.append_metrics(run, &points, Some(40)).unwrap();
    w.store
        .finish_run(run, RunStatus::Succeeded, &BTreeMap::new(), None)
        .unwrap();
    w.sync().unwrap();
    let (_, body) = w.page();
    assert!(!body.contains("private reading list"), "{body}");
    assert!(!body.contains("## Papers"), "{body}");
    let exp_issue = w.issue_titled("Dilation sweep");
    assert!(
        body.contains(&format!("experiments: {e} (#{exp_issue})")),
        "the idea lists its experiment: {body}"
    );
    let row = body
        .lines()
        .find(|l| l.starts_with(&format!("| {run} |")))
        .unwrap_or_else(|| panic!("no row for {run}: {body}"));
    assert!(
        row.contains("mamba-conv dilation=4") && row.contains("`01234567`"),
        "{row}"
    );
    assert!(row.contains("acc@64 0.800"), "best eval accuracy: {row}");
    // The loss falls: the sparkline starts high and ends low.
    let spark: String = row.chars().filter(|c| ('▁'..='█').contains(c)).collect();
    assert!(spark.starts_with('█') && spark.ends_with('▁'), "{row}");
}

#[test]
fn a_page_over_githubs_limit_continues_in_comments() {
    let mut w = page_world();
    // ~90,000 characters of tasks: more than a page, less than a page and a comment.
    for i in 0..900 {
        w.add(Kind::Task, &format!("Task {i:03} {}", "x".repeat(70)));
    }
    w.add(Kind::Experiment, "Small experiment");
    w.sync().unwrap();
    let (n, body) = w.page();
    assert!(body.chars().count() <= 65_536, "{}", body.len());
    assert!(body.contains("Continued in the comments below"), "{body}");
    let comments: Vec<String> = w
        .fake
        .state()
        .comments_on(n)
        .iter()
        .map(|c| c.body.clone())
        .collect();
    let parts: Vec<&String> = comments
        .iter()
        .filter(|c| c.contains("<!-- labbook:notebook-part"))
        .collect();
    assert!(!parts.is_empty(), "no continuation comment");
    let all: String = std::iter::once(body.clone())
        .chain(parts.iter().map(|s| s.to_string()))
        .collect();
    for i in [0, 450, 899] {
        assert!(all.contains(&format!("Task {i:03} ")), "task {i} missing");
    }
    assert!(all.contains("Small experiment"));
    // Unchanged: nothing written; still one page and the same comments.
    let before = w.writes();
    w.sync().unwrap();
    assert_eq!(w.writes(), before);
    assert_eq!(w.fake.state().comments_on(n).len(), comments.len());
}
