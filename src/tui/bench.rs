//! `labbook bench tui`: first-frame time and keystroke-to-frame latency on a large
//! temporary notebook, rendered to a `TestBackend` (so it measures our code, not the
//! terminal). Method and numbers are in docs/performance.md.
use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use labbook::Store;
use labbook::model::{Kind, NewItem, Relation};
use labbook::store::{NewRun, RunStatus, insert_item, insert_link};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde::Serialize;

use super::action::Action;
use super::state::{App, update};
use super::tab::Tab;
use super::worker::{self, Reply};
use super::{keymap::Keymap, theme::Theme, views};

#[derive(Debug, Serialize)]
pub struct TuiBenchReport {
    pub items: usize,
    pub runs: usize,
    pub width: u16,
    pub height: u16,
    /// Open the store + load every list + build the state + render the first frame.
    pub first_frame_ms: f64,
    pub open_ms: f64,
    pub load_ms: f64,
    /// Parts of `load_ms`: the worker's queries, then building the state from them.
    pub load_query_ms: f64,
    pub load_state_ms: f64,
    pub render_ms: f64,
    pub keystrokes: usize,
    /// One filter keystroke: `update` (fuzzy filter of the tab) + a full render.
    pub keystroke_p50_ms: f64,
    pub keystroke_p99_ms: f64,
    pub keystroke_max_ms: f64,
    /// The FTS query the worker runs per filter keystroke, off the UI thread.
    pub fts_filter_p50_ms: f64,
    pub fts_filter_p99_ms: f64,
    /// Runs streaming metrics into the notebook (other threads, 5 points every 200 ms each:
    /// five times the recorder's flush rate) while the timings below are taken.
    pub streaming_runs: usize,
    /// On the Runs tab with a run view (curves of 2,000 steps + log): move the selection
    /// and render (chart included).
    pub run_view_keystroke_p50_ms: f64,
    pub run_view_keystroke_p99_ms: f64,
    /// The worker's query for a run view (metric series + log tail), off the UI thread.
    pub run_view_load_p99_ms: f64,
}

use labbook::bench::percentile as pct;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

pub fn run(
    items: usize,
    runs: usize,
    streaming: usize,
    progress: impl Fn(&str),
) -> Result<TuiBenchReport> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    {
        progress(&format!(
            "building a notebook with {items} items and {runs} runs…"
        ));
        let mut store = Store::open(&path, "bench")?;
        let mut words = labbook::bench::Words::domain(0x9e37_79b9_7f4a_7c15);
        let mut ids = Vec::with_capacity(items);
        for chunk in (0..items).collect::<Vec<_>>().chunks(1000) {
            let news: Vec<NewItem> = chunk
                .iter()
                .map(|i| {
                    let kind = Kind::ALL[i % 4];
                    let mut n = NewItem::new(kind, words.sentence(6));
                    n.body = words.sentence(40);
                    n.tags = vec![words.word().to_string()];
                    if kind == Kind::Paper {
                        n.fields.year = Some(2015 + (*i as i64 % 10));
                        n.fields.authors = Some("Ada Lovelace, Alan Turing".into());
                    }
                    n
                })
                .collect();
            let made = store.write(|tx, ctx| {
                news.iter()
                    .map(|n| insert_item(tx, ctx, n).map(|i| i.id))
                    .collect::<labbook::Result<Vec<_>>>()
            })?;
            ids.extend(made);
        }
        // A link for every other item, so link counts are realistic.
        store.write(|tx, ctx| {
            for w in ids.windows(2).step_by(2) {
                insert_link(tx, ctx, w[0], w[1], Relation::RelatesTo)?;
            }
            Ok(())
        })?;
        for r in 0..runs {
            let id = store.create_run(&NewRun {
                name: Some(format!("run-{r}")),
                config: "configs/bench.toml".into(),
                steps_total: Some(1000),
                ..Default::default()
            })?;
            let metrics = BTreeMap::from([("loss".to_string(), 1.0 / (r + 1) as f64)]);
            store.finish_run(id, RunStatus::Succeeded, &metrics, None)?;
        }
    }
    // Live runs: each with 2,000 logged steps already, then appending while we measure.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut streamers = Vec::new();
    for r in 0..streaming {
        let mut store = Store::open(&path, "bench")?;
        let id = store.create_run(&NewRun {
            name: Some(format!("live-{r}")),
            config: "configs/bench.toml".into(),
            steps_total: Some(100_000),
            ..Default::default()
        })?;
        store.start_run(id, std::process::id())?;
        let point = |step: i64, k: &str| labbook::store::MetricPoint {
            step,
            key: k.to_string(),
            value: 1.0 / (step + 1) as f64,
            wall_time: step as f64 * 0.01,
        };
        let keys = ["loss", "accuracy", "lr", "grad_norm", "tokens_per_s"];
        let history: Vec<_> = (0..2000).flat_map(|s| keys.map(|k| point(s, k))).collect();
        store.append_metrics(id, &history, Some(2000))?;
        let stop = stop.clone();
        streamers.push(std::thread::spawn(move || -> labbook::Result<u64> {
            let mut step = 2000;
            let mut writes = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let pts: Vec<_> = keys.map(|k| point(step, k)).to_vec();
                store.append_metrics(id, &pts, Some(step))?;
                step += 1;
                writes += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Ok(writes)
        }));
    }

    progress("timing the first frame…");
    let (w, h) = (160, 48);
    let t0 = Instant::now();
    let store = Store::open(&path, "bench")?;
    let open_ms = ms(t0);
    let t = Instant::now();
    let data = worker::load(&store)?;
    let load_query_ms = ms(t);
    let t1 = Instant::now();
    let mut app = App::new("bench.db".into(), Keymap::default(), Theme::default());
    update(&mut app, Action::Resize(w, h));
    update(&mut app, Action::Worker(Reply::Data(data)));
    let load_ms = ms(t);
    let load_state_ms = ms(t1);
    let t = Instant::now();
    let mut term = Terminal::new(TestBackend::new(w, h))?;
    term.draw(|f| views::render(f, &app))?;
    let render_ms = ms(t);
    let first_frame_ms = ms(t0);

    progress("timing filter keystrokes…");
    let queries = [
        "selective scan",
        "mamba kernel",
        "attention",
        "cuda memory",
        "xyz",
    ];
    let mut lat = Vec::new();
    let mut fts = Vec::new();
    for kind in Kind::ALL {
        update(&mut app, Action::Tab(Tab::from_kind(kind)));
        for q in queries {
            update(&mut app, Action::Filter);
            for c in q.chars() {
                let t = Instant::now();
                update(&mut app, Action::Char(c));
                term.draw(|f| views::render(f, &app))?;
                lat.push(ms(t));
                let t = Instant::now();
                let prefix = app.view().filter.clone();
                std::hint::black_box(store.search(
                    &labbook::store::as_you_type(&prefix),
                    Some(kind),
                    500,
                )?);
                fts.push(ms(t));
            }
            update(&mut app, Action::Cancel);
        }
    }
    let mut view_lat = Vec::new();
    let mut view_load = Vec::new();
    if streaming > 0 {
        progress("timing the run view while runs stream metrics…");
        update(&mut app, Action::Tab(Tab::Runs));
        update(&mut app, Action::Bottom);
        for i in 0..60 {
            // The worker's part: reload the selected run's curves and log.
            if let Some(r) = app.run_at(app.view().selected) {
                let t = Instant::now();
                let v = worker::load_run_view(&store, r.id)?;
                view_load.push(ms(t));
                update(&mut app, Action::Worker(Reply::RunView(v)));
            }
            let t = Instant::now();
            update(&mut app, if i % 2 == 0 { Action::Up } else { Action::Down });
            term.draw(|f| views::render(f, &app))?;
            view_lat.push(ms(t));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in streamers {
        s.join().expect("streamer thread")?;
    }
    Ok(TuiBenchReport {
        streaming_runs: streaming,
        run_view_keystroke_p50_ms: pct(&mut view_lat, 0.50),
        run_view_keystroke_p99_ms: pct(&mut view_lat, 0.99),
        run_view_load_p99_ms: pct(&mut view_load, 0.99),
        items,
        runs,
        width: w,
        height: h,
        first_frame_ms,
        open_ms,
        load_ms,
        load_query_ms,
        load_state_ms,
        render_ms,
        keystrokes: lat.len(),
        keystroke_p50_ms: pct(&mut lat, 0.50),
        keystroke_p99_ms: pct(&mut lat, 0.99),
        keystroke_max_ms: pct(&mut lat, 1.0),
        fts_filter_p50_ms: pct(&mut fts, 0.50),
        fts_filter_p99_ms: pct(&mut fts, 0.99),
    })
}
