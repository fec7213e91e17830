//! Snapshot tests of every screen at 80×24 and 160×48 on fixed data (fixed timestamps,
//! no database), rendered with ratatui's `TestBackend`.
use std::collections::{BTreeMap, HashMap};

use labbook::model::{
    Comment, Fields, HistoryEntry, Item, ItemId, Kind, LinkView, Relation, RunId,
};
use labbook::store::{Run, RunStatus};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::action::Action;
use super::keymap::Keymap;
use super::state::{App, update};
use super::tab::Tab;
use super::theme::Theme;
use super::views;
use super::worker::{Data, Detail, Reply};

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];
const T0: &str = "2026-03-02T09:15:00.000Z";

pub fn id(kind: Kind, num: i64) -> ItemId {
    ItemId { kind, num }
}

pub fn item(kind: Kind, num: i64, title: &str, status: &str, tags: &[&str]) -> Item {
    Item {
        id: id(kind, num),
        rowid: Kind::ALL.iter().position(|k| *k == kind).unwrap() as i64 * 100 + num,
        kind,
        title: title.into(),
        body: String::new(),
        status: status.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        author: "ada".into(),
        created_at: T0.into(),
        updated_at: format!("2026-03-{:02}T10:00:00.000Z", 2 + num),
        archived: false,
        fields: Fields::default(),
    }
}

fn run(n: i64, name: &str, status: RunStatus, loss: Option<f64>) -> Run {
    Run {
        id: RunId(n),
        experiment: Some(id(Kind::Experiment, 1)),
        name: Some(name.into()),
        config: "[model]\nkind = \"mamba\"\nd_model = 64\n".into(),
        config_path: Some("configs/selective_copying.toml".into()),
        git_commit: Some("3f2a9c1".into()),
        git_diff: None,
        seed: Some(n),
        backend: Some("ndarray".into()),
        device: Some("cpu".into()),
        host: Some("lab-01".into()),
        status,
        author: "bob".into(),
        created_at: T0.into(),
        started_at: Some(T0.into()),
        finished_at: None,
        heartbeat_at: None,
        pid: None,
        steps_total: Some(2000),
        steps_done: if loss.is_some() { 2000 } else { 740 },
        final_metrics: loss
            .map(|l| BTreeMap::from([("accuracy".into(), 0.981), ("loss".into(), l)]))
            .unwrap_or_default(),
        error: None,
        sweep: None,
        environment: None,
    }
}

/// A small deterministic notebook.
pub fn data() -> Data {
    let mut t1 = item(
        Kind::Task,
        1,
        "Write configs for the selective copying reproduction",
        "doing",
        &["repro"],
    );
    t1.fields.assignee = Some("alice".into());
    t1.fields.priority = Some(1);
    t1.body = "## Plan\nUse **selective** scan configs from the paper.\n- copy length 16\n- vocab 16\n\nSee `configs/selective_copying.toml`.".into();
    let mut t2 = item(
        Kind::Task,
        2,
        "Run induction-heads sweep",
        "todo",
        &["sweep"],
    );
    t2.fields.assignee = Some("bob".into());
    t2.fields.priority = Some(2);
    let t3 = item(Kind::Task, 3, "Port the scan to CUDA", "done", &["cuda"]);
    let mut p1 = item(
        Kind::Paper,
        1,
        "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
        "read",
        &["mamba", "ssm"],
    );
    p1.fields.authors = Some("Albert Gu, Tri Dao".into());
    p1.fields.year = Some(2023);
    p1.fields.arxiv_id = Some("2312.00752".into());
    p1.fields.bibtex_key = Some("gu2023mamba".into());
    p1.body = "Selective SSMs make the state-space parameters input-dependent.".into();
    let mut p2 = item(
        Kind::Paper,
        2,
        "Attention Is All You Need",
        "to-read",
        &["transformer"],
    );
    p2.fields.authors = Some("Ashish Vaswani and Noam Shazeer and Niki Parmar".into());
    p2.fields.year = Some(2017);
    let i1 = item(
        Kind::Idea,
        1,
        "Mamba+Transformer hybrid layers",
        "exploring",
        &["hybrid"],
    );
    let i2 = item(
        Kind::Idea,
        2,
        "Dilated conv inside the Mamba block",
        "proposed",
        &[],
    );
    let mut e1 = item(
        Kind::Experiment,
        1,
        "Selective copying: Mamba vs LTI ablation",
        "running",
        &["ablation"],
    );
    e1.fields.hypothesis = Some("selection is what solves copying".into());
    Data {
        items: vec![t1, t2, t3, p1, p2, i1, i2, e1],
        link_counts: HashMap::from([(1, 2), (101, 1), (301, 1)]),
        runs: vec![
            run(1, "copy-mamba-s1", RunStatus::Succeeded, Some(0.0123)),
            run(2, "copy-lti-s1", RunStatus::Failed, None),
            run(3, "copy-mamba-s2", RunStatus::Running, None),
        ],
        sync: Default::default(),
    }
}

pub fn detail_t1() -> Detail {
    Detail {
        links: vec![
            LinkView {
                label: "for".into(),
                relation: Relation::For,
                outgoing: true,
                other: id(Kind::Experiment, 1),
                other_title: "Selective copying: Mamba vs LTI ablation".into(),
                other_status: "running".into(),
            },
            LinkView {
                label: "relates-to".into(),
                relation: Relation::RelatesTo,
                outgoing: true,
                other: id(Kind::Paper, 1),
                other_title: "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
                    .into(),
                other_status: "read".into(),
            },
        ],
        comments: vec![Comment {
            id: 1,
            author: "bob".into(),
            body: "Copy length 16 reproduces Table 1.".into(),
            created_at: "2026-03-03T11:00:00.000Z".into(),
        }],
        history: vec![HistoryEntry {
            author: "alice".into(),
            at: "2026-03-03T12:00:00.000Z".into(),
            field: "status".into(),
            old: Some("todo".into()),
            new: Some("doing".into()),
        }],
        sync: Some(labbook::github::ItemSync {
            repo: "lab/mamba".into(),
            issue: 12,
            status: labbook::github::SyncStatus::Synced,
        }),
        runs: Vec::new(),
    }
}

/// The app after loading `data()` with T-1's detail, at `w`×`h`.
pub fn loaded_app(w: u16, h: u16) -> App {
    let mut app = App::new("tracker.db".into(), Keymap::default(), Theme::default());
    update(&mut app, Action::Resize(w, h));
    update(&mut app, Action::Worker(Reply::Data(data())));
    let t1 = app.items.get(Kind::Task)[0].clone();
    update(
        &mut app,
        Action::Worker(Reply::Detail(t1.id, t1, detail_t1())),
    );
    app
}

fn screen(app: &App) -> String {
    let mut term = Terminal::new(TestBackend::new(app.size.width, app.size.height)).unwrap();
    term.draw(|f| views::render(f, app)).unwrap();
    term.backend().to_string()
}

/// Snapshots a screen at both sizes; `setup` drives the app from the loaded state.
fn snap(name: &str, setup: impl Fn(&mut App)) {
    for (w, h) in SIZES {
        let mut app = loaded_app(w, h);
        setup(&mut app);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(&app));
    }
}

fn keys(app: &mut App, actions: Vec<Action>) {
    for a in actions {
        update(app, a);
    }
}

fn typed(s: &str) -> Vec<Action> {
    s.chars().map(Action::Char).collect()
}

#[test]
fn tasks_tab() {
    snap("tasks", |_| {});
}

#[test]
fn detail_focus_on_a_link() {
    snap("detail_focus", |app| {
        keys(app, vec![Action::Enter, Action::Down])
    });
}

/// An experiment's detail pane lists its runs, newest first, with status and best metric.
#[test]
fn experiment_detail_lists_its_runs() {
    snap("experiment_detail_runs", |app| {
        keys(app, vec![Action::Tab(Tab::Experiments)]);
        let e1 = app.items.get(Kind::Experiment)[0].clone();
        let run = |n: i64, status: &str, name: &str, best: &str| labbook::compare::ExperimentRun {
            run: RunId(n),
            status: status.into(),
            name: Some(name.into()),
            best: Some(best.into()),
        };
        let detail = Detail {
            runs: vec![
                run(3, "running", "copy-mamba-s2", "loss 0.52"),
                run(2, "failed", "copy-lti-s1", "loss 2.3"),
                run(1, "succeeded", "copy-mamba-s1", "best eval/acc@64 1"),
            ],
            ..Detail::default()
        };
        update(app, Action::Worker(Reply::Detail(e1.id, e1, detail)));
    });
}

#[test]
fn papers_ideas_experiments_runs_tabs() {
    for (tab, name) in [
        (Tab::Papers, "papers"),
        (Tab::Ideas, "ideas"),
        (Tab::Experiments, "experiments"),
        (Tab::Runs, "runs"),
    ] {
        snap(name, |app| keys(app, vec![Action::Tab(tab)]));
    }
}

#[test]
fn empty_notebook() {
    for (w, h) in SIZES {
        let mut app = App::new("tracker.db".into(), Keymap::default(), Theme::default());
        update(&mut app, Action::Resize(w, h));
        update(&mut app, Action::Worker(Reply::Data(Data::default())));
        insta::assert_snapshot!(format!("empty_{w}x{h}"), screen(&app));
    }
    // A notebook with a task but no idea: the Ideas tab says how to add one.
    let mut app = App::new("tracker.db".into(), Keymap::default(), Theme::default());
    update(&mut app, Action::Resize(80, 24));
    let one_task = Data {
        items: vec![item(Kind::Task, 1, "Only a task", "todo", &[])],
        ..Data::default()
    };
    update(&mut app, Action::Worker(Reply::Data(one_task)));
    keys(&mut app, vec![Action::Tab(Tab::Ideas)]);
    assert!(screen(&app).contains("a adds an idea"), "{}", screen(&app));
}

/// The filter line counts in English: "1 match", "2 matches".
#[test]
fn filter_counts_matches() {
    let mut app = loaded_app(80, 24);
    let mut a = vec![Action::Filter];
    a.extend(typed("s"));
    keys(&mut app, a);
    let n = app.visible.len();
    assert!(n > 1, "the fixture has several tasks with an s");
    assert!(
        screen(&app).contains(&format!("{n} matches")),
        "{}",
        screen(&app)
    );
}

#[test]
fn help_screen() {
    snap("help", |app| keys(app, vec![Action::Help]));
}

#[test]
fn add_form_with_validation_errors() {
    snap("add_form", |app| {
        let mut a = vec![Action::Add, Action::NextField, Action::ClearInput];
        a.extend(typed("later"));
        a.push(Action::Submit);
        keys(app, a)
    });
}

#[test]
fn edit_form() {
    snap("edit_form", |app| {
        keys(app, vec![Action::EditFields, Action::NextField])
    });
}

#[test]
fn link_picker() {
    snap("link_picker", |app| {
        let mut a = vec![Action::Link];
        a.extend(typed("mamba"));
        keys(app, a)
    });
}

#[test]
fn global_search() {
    snap("search", |app| {
        let mut a = vec![Action::Search];
        a.extend(typed("selective"));
        a.push(Action::Worker(Reply::SearchHits {
            query: "selective".into(),
            for_filter: false,
            hits: vec![
                (
                    id(Kind::Paper, 1),
                    "Mamba: Linear-Time Sequence Modeling with Selective State Spaces".into(),
                    "Linear-Time Sequence Modeling with [Selective] State Spaces".into(),
                ),
                (
                    id(Kind::Task, 1),
                    "Write configs for the selective copying reproduction".into(),
                    "Use **[selective]** scan configs".into(),
                ),
            ],
        }));
        keys(app, a)
    });
}

#[test]
fn filter_as_you_type() {
    snap("filter", |app| {
        let mut a = vec![Action::Filter];
        a.extend(typed("scan"));
        keys(app, a)
    });
}

#[test]
fn confirm_archive() {
    snap("confirm_archive", |app| keys(app, vec![Action::Archive]));
}

#[test]
fn tag_prompt() {
    snap("tag_prompt", |app| {
        let mut a = vec![Action::Tag];
        a.extend(typed("cuda -repro"));
        keys(app, a)
    });
}

#[test]
fn tiny_terminals_do_not_panic() {
    let screens: Vec<Vec<Action>> = vec![
        vec![],
        vec![Action::Enter, Action::Down],
        vec![Action::Tab(Tab::Papers)],
        vec![Action::Tab(Tab::Runs)],
        vec![Action::Help, Action::PageDown],
        vec![Action::Add, Action::Submit],
        vec![Action::Link, Action::Char('m')],
        vec![Action::Search, Action::Char('m')],
        vec![Action::Filter, Action::Char('q')],
        vec![Action::Archive],
        vec![Action::Comment, Action::Char('x')],
    ];
    for (w, h) in [(1, 1), (10, 3), (30, 8), (60, 12), (69, 20)] {
        for actions in &screens {
            let mut app = loaded_app(w, h);
            keys(&mut app, actions.clone());
            let s = screen(&app);
            assert_eq!(s.lines().count(), h as usize);
        }
    }
}

#[test]
fn run_view_with_curves_and_log() {
    use crate::tui::worker::{Reply, RunView};
    let view = || RunView {
        run: RunId(1),
        curves: vec![
            (
                "loss".into(),
                (1..=200)
                    .map(|s| (s as f64, 3.0 * (-(s as f64) / 60.0).exp() + 0.05))
                    .collect(),
            ),
            (
                "eval/acc@16".into(),
                (1..=10)
                    .map(|i| (i as f64 * 20.0, i as f64 / 10.0))
                    .collect(),
            ),
        ],
        log_tail: vec![
            "step 199/200  loss 0.0712".into(),
            "R-1 succeeded after 200 steps in 4.2s".into(),
        ],
    };
    snap("run_view", |app| {
        keys(
            app,
            vec![
                Action::Tab(Tab::Runs),
                Action::Worker(Reply::RunView(view())),
            ],
        )
    });
    snap("run_view_log_smooth", |app| {
        keys(
            app,
            vec![
                Action::Tab(Tab::Runs),
                Action::Worker(Reply::RunView(view())),
                Action::ToggleLogScale,
                Action::CycleSmoothing,
            ],
        )
    });
}

#[test]
fn compare_marked_runs() {
    use crate::tui::worker::{CompareView, Reply};
    let curve = |k: f64| -> Vec<(f64, f64)> {
        (1..=100)
            .map(|s| (s as f64, 3.0 * (-(s as f64) / k).exp() + 0.1))
            .collect()
    };
    let view = || CompareView {
        runs: vec![RunId(1), RunId(2)],
        curves: vec![(
            "loss".into(),
            vec![(RunId(1), curve(20.0)), (RunId(2), curve(50.0))],
        )],
        keys: vec![(
            "model.kind".into(),
            vec!["mamba".into(), "mamba-lti".into()],
        )],
        finals: vec![("final loss".into(), vec!["0.0123".into(), "-".into()])],
    };
    snap("compare_runs", |app| {
        keys(
            app,
            vec![
                Action::Tab(Tab::Runs),
                Action::CycleStatus,
                Action::Down,
                Action::CycleStatus,
                Action::Worker(Reply::Compare(view())),
            ],
        )
    });
}

#[test]
fn status_line_summarises_github_sync_only_when_used() {
    let app = loaded_app(120, 30);
    assert!(!screen(&app).contains("GitHub:"));
    let mut d = data();
    d.sync = labbook::github::SyncSummary {
        linked: 3,
        conflicts: 1,
        ..Default::default()
    };
    let mut app = loaded_app(120, 30);
    update(&mut app, Action::Worker(Reply::Data(d)));
    let text = screen(&app);
    let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap();
    assert!(last.contains("GitHub: 3 issues, 1 conflicts"), "{last}");
}
