//! Unit tests of state transitions: pure `update` on fixed data, checking the state
//! and the effects it asks for.
use labbook::model::{Item, Kind, Relation};

use super::action::{Action, Effect};
use super::snapshots::{data, id, item, loaded_app};
use super::state::{App, ConfirmKind, Focus, Mode, Sel, update};
use super::tab::Tab;
use super::worker::{Data, Reply, Request};

fn run(app: &mut App, actions: Vec<Action>) -> Vec<Effect> {
    actions.into_iter().flat_map(|a| update(app, a)).collect()
}

fn typed(s: &str) -> Vec<Action> {
    s.chars().map(Action::Char).collect()
}

fn sent(fx: &[Effect]) -> Vec<&Request> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn add_validates_then_sends_and_selects_the_new_item() {
    let mut app = loaded_app(120, 40);
    // Empty title: the form stays open with an error, nothing is sent.
    let fx = run(&mut app, vec![Action::Add, Action::Submit]);
    assert!(sent(&fx).is_empty());
    let Mode::Form(f) = &app.mode else {
        panic!("form closed")
    };
    assert_eq!(f.fields[0].error.as_deref(), Some("a title is required"));

    let mut a = typed("Profile the scan");
    a.push(Action::Submit);
    let fx = run(&mut app, a);
    let [Request::Add(new)] = sent(&fx)[..] else {
        panic!("{fx:?}")
    };
    assert_eq!(new.title, "Profile the scan");
    assert_eq!(new.kind, Kind::Task);
    assert!(matches!(&app.mode, Mode::Form(f) if f.saving));

    // The worker reports success, then the reloaded data with the new item.
    let t4 = item(Kind::Task, 4, "Profile the scan", "todo", &[]);
    let mut d = data();
    d.items.push(t4);
    let fx = run(
        &mut app,
        vec![
            Action::Worker(Reply::Done {
                msg: "added T-4".into(),
                select: Some(id(Kind::Task, 4)),
            }),
            Action::Worker(Reply::Data(d)),
        ],
    );
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.selected(), Some(Sel::Item(id(Kind::Task, 4))));
    assert!(matches!(sent(&fx)[..], [Request::Detail(i)] if *i == id(Kind::Task, 4)));
}

#[test]
fn failed_save_keeps_the_form_and_its_text() {
    let mut app = loaded_app(120, 40);
    let mut a = vec![Action::Add];
    a.extend(typed("X"));
    a.push(Action::Submit);
    a.push(Action::Worker(Reply::Failed(
        "notebook is read-only".into(),
    )));
    run(&mut app, a);
    let Mode::Form(f) = &app.mode else {
        panic!("form closed")
    };
    assert_eq!(f.value("title"), "X");
    assert_eq!(f.error.as_deref(), Some("notebook is read-only"));
    assert!(!f.saving);
}

#[test]
fn edit_sends_only_changed_fields() {
    let mut app = loaded_app(120, 40);
    // The status is a choice: → moves doing to done; typed text never lands in it.
    let mut a = vec![Action::EditFields, Action::NextField];
    a.extend(typed("xyz"));
    a.extend([Action::ChoiceNext, Action::Submit]);
    let fx = run(&mut app, a);
    let [Request::Update(target, patch)] = sent(&fx)[..] else {
        panic!("{fx:?}")
    };
    assert_eq!(*target, id(Kind::Task, 1));
    assert_eq!(patch.status.as_deref(), Some("done"));
    assert!(patch.title.is_none() && patch.tags.is_none() && patch.fields.is_empty());
}

#[test]
fn status_key_cycles_to_the_next_status() {
    let mut app = loaded_app(120, 40);
    let fx = run(&mut app, vec![Action::CycleStatus]);
    let [Request::Update(_, patch)] = sent(&fx)[..] else {
        panic!("{fx:?}")
    };
    assert_eq!(patch.status.as_deref(), Some("done")); // doing → done
}

#[test]
fn link_picker_fuzzy_matches_across_kinds() {
    let mut app = loaded_app(120, 40);
    let mut a = vec![Action::Link];
    a.extend(typed("attention"));
    let fx = run(&mut app, a);
    assert!(fx.is_empty());
    let Mode::Picker(p) = &app.mode else { panic!() };
    assert_eq!(p.matches.first(), Some(&id(Kind::Paper, 2)));
    assert!(
        !p.matches.contains(&id(Kind::Task, 1)),
        "an item does not link to itself"
    );
    let fx = run(&mut app, vec![Action::CycleRelation, Action::Submit]);
    let [Request::Link(a, b, rel)] = sent(&fx)[..] else {
        panic!("{fx:?}")
    };
    assert_eq!((*a, *b), (id(Kind::Task, 1), id(Kind::Paper, 2)));
    // Task→paper defaults to relates-to; one ctrl-r moves to the next relation.
    assert_eq!(*rel, Relation::MotivatedBy);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn follow_a_link_and_come_back() {
    let mut app = loaded_app(120, 40);
    // Focus the links; the second one (relates-to P-1) is followed.
    let fx = run(&mut app, vec![Action::Enter, Action::Down, Action::Enter]);
    assert_eq!(app.tab, Tab::Papers);
    assert_eq!(app.selected(), Some(Sel::Item(id(Kind::Paper, 1))));
    assert_eq!(app.focus, Focus::List);
    assert!(matches!(sent(&fx)[..], [Request::Detail(i)] if *i == id(Kind::Paper, 1)));
    // Go somewhere else, then back twice.
    run(&mut app, vec![Action::Down]);
    assert_eq!(app.selected(), Some(Sel::Item(id(Kind::Paper, 2))));
    run(&mut app, vec![Action::Back]);
    assert_eq!(app.tab, Tab::Tasks);
    assert_eq!(app.selected(), Some(Sel::Item(id(Kind::Task, 1))));
    run(&mut app, vec![Action::Back]);
    assert!(
        app.message
            .as_ref()
            .unwrap()
            .text
            .contains("nothing to go back")
    );
}

#[test]
fn back_clears_a_filter_that_hides_the_target() {
    let mut app = loaded_app(120, 40);
    run(&mut app, vec![Action::Enter, Action::Enter]); // → E-1
    assert_eq!(app.tab, Tab::Experiments);
    run(&mut app, vec![Action::Tab(Tab::Tasks), Action::Filter]);
    run(&mut app, typed("cuda"));
    run(
        &mut app,
        vec![Action::Submit, Action::Tab(Tab::Experiments), Action::Back],
    );
    // Back goes to T-1 on Tasks although `cuda` hid it.
    assert_eq!(app.tab, Tab::Tasks);
    assert_eq!(app.selected(), Some(Sel::Item(id(Kind::Task, 1))));
    assert!(app.view().filter.is_empty());
}

#[test]
fn filter_matches_titles_fuzzily_and_bodies_via_fts() {
    let mut app = loaded_app(120, 40);
    let mut a = vec![Action::Filter];
    a.extend(typed("cuda"));
    let fx = run(&mut app, a);
    let titles: Vec<&str> = (0..app.visible.len())
        .map(|r| app.item_at(r).unwrap().title.as_str())
        .collect();
    assert_eq!(titles, vec!["Port the scan to CUDA"]);
    // Each keystroke asks the worker for body matches of the current text.
    let searches: Vec<&str> = sent(&fx)
        .iter()
        .filter_map(|r| match r {
            Request::Search {
                query,
                for_filter: true,
                ..
            } => Some(query.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(searches, vec!["c", "cu", "cud", "cuda"]);
    // A stale reply is ignored; the current one adds T-2 (matched in its body).
    let hit = |q: &str| {
        Action::Worker(Reply::SearchHits {
            query: q.into(),
            for_filter: true,
            hits: vec![(id(Kind::Task, 2), String::new(), String::new())],
        })
    };
    run(&mut app, vec![hit("cud")]);
    assert_eq!(app.visible.len(), 1);
    run(&mut app, vec![hit("cuda")]);
    assert_eq!(app.visible.len(), 2);
    // Enter keeps the filter; Esc in normal mode clears it.
    run(&mut app, vec![Action::Submit]);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.view().filter, "cuda");
    run(&mut app, vec![Action::Leave]);
    assert_eq!(app.visible.len(), 3);
}

#[test]
fn global_search_jumps_across_kinds_and_back_returns() {
    let mut app = loaded_app(120, 40);
    let mut a = vec![Action::Search];
    a.extend(typed("P-2"));
    run(&mut app, a);
    let Mode::Search(s) = &app.mode else { panic!() };
    assert_eq!(s.hits[0].0, id(Kind::Paper, 2), "an exact ID is a hit");
    run(&mut app, vec![Action::Submit]);
    assert_eq!(app.selected(), Some(Sel::Item(id(Kind::Paper, 2))));
    run(&mut app, vec![Action::Back]);
    assert_eq!(app.selected(), Some(Sel::Item(id(Kind::Task, 1))));
}

#[test]
fn quit_asks_only_when_an_edit_is_unsaved() {
    let mut app = loaded_app(120, 40);
    assert!(matches!(
        run(&mut app, vec![Action::Quit])[..],
        [Effect::Quit]
    ));
    let mut a = vec![Action::Add];
    a.extend(typed("half-typed"));
    a.push(Action::Quit);
    assert!(run(&mut app, a).is_empty());
    assert!(matches!(app.mode, Mode::Confirm(ConfirmKind::Quit, _)));
    // "No" returns to the form with the text intact.
    run(&mut app, vec![Action::Cancel]);
    let Mode::Form(f) = &app.mode else { panic!() };
    assert_eq!(f.value("title"), "half-typed");
    run(&mut app, vec![Action::Quit]);
    assert!(matches!(
        run(&mut app, vec![Action::Submit])[..],
        [Effect::Quit]
    ));
}

#[test]
fn archive_and_delete_ask_first() {
    let mut app = loaded_app(120, 40);
    assert!(run(&mut app, vec![Action::Delete, Action::Cancel]).is_empty());
    assert_eq!(app.mode, Mode::Normal);
    let fx = run(&mut app, vec![Action::Archive, Action::Submit]);
    assert!(matches!(sent(&fx)[..], [Request::Archive(i)] if *i == id(Kind::Task, 1)));
}

#[test]
fn tag_prompt_splits_adds_and_removes() {
    let mut app = loaded_app(120, 40);
    let mut a = vec![Action::Tag];
    a.extend(typed("cuda +fast -repro"));
    a.push(Action::Submit);
    let fx = run(&mut app, a);
    let [Request::Retag(_, add, rm)] = sent(&fx)[..] else {
        panic!("{fx:?}")
    };
    assert_eq!(add, &vec!["cuda".to_string(), "fast".to_string()]);
    assert_eq!(rm, &vec!["repro".to_string()]);
}

#[test]
fn papers_open_and_copy_key() {
    let mut app = loaded_app(120, 40);
    run(&mut app, vec![Action::Tab(Tab::Papers)]);
    let fx = run(&mut app, vec![Action::OpenUrl, Action::CopyKey]);
    assert!(matches!(&fx[0], Effect::OpenUrl(u) if u == "https://arxiv.org/abs/2312.00752"));
    assert!(matches!(&fx[1], Effect::Copy(k) if k == "gu2023mamba"));
}

#[test]
fn synced_items_open_their_issue_and_s_syncs_off_the_ui_thread() {
    let mut app = loaded_app(120, 40);
    // T-1 is a task (no paper URL) linked to issue lab/mamba#12.
    let fx = run(&mut app, vec![Action::OpenUrl, Action::Sync]);
    assert!(
        matches!(&fx[0], Effect::OpenUrl(u) if u == "https://github.com/lab/mamba/issues/12"),
        "{fx:?}"
    );
    assert!(matches!(&fx[1], Effect::Sync), "{fx:?}");
}

#[test]
fn mouse_click_selects_and_wheel_scrolls() {
    let mut app = loaded_app(120, 40);
    // Row 0 is the tab bar, row 1 the list border, row 2 its header: row 4 is T-2... T-3.
    run(&mut app, vec![Action::Click { col: 5, row: 5 }]);
    assert_eq!(app.selected(), Some(Sel::Item(id(Kind::Task, 3))));
    run(
        &mut app,
        vec![Action::ScrollAt {
            col: 5,
            row: 5,
            down: false,
        }],
    );
    assert_eq!(app.selected(), Some(Sel::Item(id(Kind::Task, 1))));
    // Clicking a tab label switches tabs.
    let x = super::views::layout::tab_labels(app.tab_counts().as_ref())[Tab::Runs.index()].1 + 2;
    run(&mut app, vec![Action::Click { col: x, row: 0 }]);
    assert_eq!(app.tab, Tab::Runs);
}

#[test]
fn reload_keeps_the_selection_and_runs_are_read_only() {
    let mut app = loaded_app(120, 40);
    run(&mut app, vec![Action::Down]);
    let mut d: Data = data();
    d.items.retain(|i: &Item| i.id != id(Kind::Task, 1));
    run(&mut app, vec![Action::Worker(Reply::Data(d))]);
    assert_eq!(app.selected(), Some(Sel::Item(id(Kind::Task, 2))));
    run(&mut app, vec![Action::Tab(Tab::Runs)]);
    assert!(run(&mut app, vec![Action::EditFields]).is_empty());
    assert!(
        app.message.as_ref().unwrap().is_error,
        "an error explains why"
    );
    // `a` on the Runs tab starts a run instead (see below).
}

#[test]
fn runs_tab_launches_stops_and_loads_run_views() {
    use labbook::model::RunId;
    let mut app = loaded_app(160, 48);
    // Selecting a run asks the worker for its curves.
    let fx = run(&mut app, vec![Action::Tab(Tab::Runs)]);
    assert!(
        matches!(sent(&fx)[..], [Request::RunView(RunId(1))]),
        "{fx:?}"
    );
    // `a` opens the launch prompt; submitting starts `labbook run ... --detach`.
    let mut a = vec![Action::Add];
    a.extend(typed("smoke.toml --set train.lr=1e-3"));
    a.push(Action::Submit);
    let fx = run(&mut app, a);
    assert!(
        matches!(&fx[..], [Effect::LaunchRun(args)] if args == &["configs/smoke.toml", "--set", "train.lr=1e-3"]),
        "{fx:?}"
    );
    assert!(matches!(app.mode, Mode::Normal));
    // `d` on a finished run says so; on the running R-3 it sends a cancel.
    let fx = run(&mut app, vec![Action::Archive]);
    assert!(sent(&fx).is_empty());
    let fx = run(&mut app, vec![Action::Bottom, Action::Archive]);
    assert!(
        sent(&fx)
            .iter()
            .any(|r| matches!(r, Request::CancelRun(RunId(3)))),
        "{fx:?}"
    );
    // Log scale and smoothing are view settings.
    run(
        &mut app,
        vec![Action::ToggleLogScale, Action::CycleSmoothing],
    );
    assert!(app.log_scale);
    assert_eq!(app.smoothing, 10);
}

#[test]
fn marking_two_runs_asks_for_a_comparison() {
    use labbook::model::RunId;
    let mut app = loaded_app(160, 48);
    let fx = run(&mut app, vec![Action::Tab(Tab::Runs), Action::CycleStatus]);
    assert!(
        !sent(&fx)
            .iter()
            .any(|r| matches!(r, Request::CompareRuns(_)))
    );
    let fx = run(&mut app, vec![Action::Down, Action::CycleStatus]);
    assert!(
        sent(&fx)
            .iter()
            .any(|r| matches!(r, Request::CompareRuns(v) if v == &[RunId(1), RunId(2)])),
        "{fx:?}"
    );
    // Unmarking one leaves a single run: no comparison.
    run(&mut app, vec![Action::CycleStatus]);
    assert_eq!(app.marked_runs, vec![RunId(1)]);
}

#[test]
fn job_replies_become_status_messages() {
    use labbook::model::RunId;
    let mut app = loaded_app(120, 40);
    run(&mut app, vec![Action::Worker(Reply::RunStarted(RunId(4)))]);
    let m = app.message.clone().unwrap();
    assert_eq!(m.text, "R-4 started in the background (d stops it)");
    assert!(!m.is_error);
    run(
        &mut app,
        vec![Action::Worker(Reply::Failed(
            "unexpected argument '--bogus' found".into(),
        ))],
    );
    assert!(app.message.as_ref().unwrap().is_error);
}

#[test]
fn r_picks_a_config_and_starts_a_run_under_the_experiment() {
    use super::state::ConfigFile;
    use super::worker::Reply;
    let mut app = loaded_app(160, 48);
    // Not from the Tasks tab: an error says where.
    assert!(run(&mut app, vec![Action::RunPicker]).is_empty());
    assert!(app.message.as_ref().unwrap().is_error);
    run(&mut app, vec![Action::Tab(Tab::Experiments)]);
    let Some(Sel::Item(exp)) = app.selected() else {
        panic!("an experiment is selected")
    };
    let fx = run(&mut app, vec![Action::RunPicker]);
    assert!(matches!(fx[..], [Effect::ListConfigs]), "{fx:?}");
    let cfg = |path: &str, recent| ConfigFile {
        path: path.into(),
        abs: std::path::PathBuf::from("/nb").join(path),
        text: format!("# {path}\n[model]\n"),
        recent,
    };
    let configs = vec![
        cfg("configs/smoke.toml", true),
        cfg("configs/ideas/alpha.toml", false),
        cfg("configs/ideas/beta.toml", false),
    ];
    run(&mut app, vec![Action::Worker(Reply::Configs(configs))]);
    let Mode::RunPicker(p) = &app.mode else {
        panic!("{:?}", app.mode)
    };
    assert_eq!(p.matches, [0, 1, 2], "all, recent first");
    // Typing filters fuzzily; ↓ moves; tab goes to the overrides, then to local/remote.
    let mut a = typed("ideas");
    a.push(Action::NextField);
    a.push(Action::SwitchField);
    a.extend(typed("train.lr=1e-3 --set train.steps=5"));
    a.push(Action::SwitchField);
    a.push(Action::Submit);
    let fx = run(&mut app, a);
    let want: Vec<String> = [
        "/nb/configs/ideas/beta.toml",
        "--set",
        "train.lr=1e-3",
        "--set",
        "train.steps=5",
        "-e",
        &exp.to_string(),
    ]
    .map(String::from)
    .to_vec();
    assert!(
        matches!(&fx[..], [Effect::LaunchRun(args)] if *args == want),
        "{fx:?}"
    );
    assert!(matches!(app.mode, Mode::Normal));
    // Remote: the same arguments, filed as a request instead.
    run(&mut app, vec![Action::RunPicker]);
    run(
        &mut app,
        vec![Action::Worker(Reply::Configs(vec![cfg(
            "configs/smoke.toml",
            true,
        )]))],
    );
    let fx = run(
        &mut app,
        vec![
            Action::SwitchField,
            Action::SwitchField,
            Action::Char(' '),
            Action::Submit,
        ],
    );
    assert!(
        matches!(&fx[..], [Effect::LaunchRemote(args)] if args[0] == "/nb/configs/smoke.toml"),
        "{fx:?}"
    );
}

#[test]
fn r_and_c_on_a_run_start_it_again_from_its_snapshot() {
    use labbook::model::RunId;
    let mut app = loaded_app(160, 48);
    // Elsewhere `r` still reloads.
    let fx = run(&mut app, vec![Action::Rerun]);
    assert!(matches!(sent(&fx)[..], [Request::LoadAll]), "{fx:?}");
    run(&mut app, vec![Action::Tab(Tab::Runs)]);
    let Some(Sel::Run(id)) = app.selected() else {
        panic!("a run is selected")
    };
    let snapshot = app.runs.iter().find(|r| r.id == id).unwrap().config.clone();
    for (action, edit) in [(Action::Rerun, false), (Action::Comment, true)] {
        let fx = run(&mut app, vec![action]);
        match &fx[..] {
            [
                Effect::RunFromSnapshot {
                    run: r,
                    config,
                    edit: e,
                    ..
                },
            ] => {
                assert_eq!((*r, e), (id, &edit));
                assert_eq!(config, &snapshot);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(id, RunId(1));
}
