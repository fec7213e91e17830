//! The database thread: owns its own `Store`, answers `Request`s over a channel and
//! reports `Reply`s back, so the UI never blocks on SQLite. It also polls
//! `PRAGMA data_version` so writes by other processes show up without a restart.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use labbook::Store;
use labbook::model::{Comment, HistoryEntry, Item, ItemId, ItemPatch, LinkView, NewItem, Relation};
use labbook::store::{ListFilter, Run, RunFilter};

/// How often the worker checks whether another process changed the notebook.
pub const POLL: Duration = Duration::from_millis(500);

// Messages are moved once per event; boxing the big variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Request {
    LoadAll,
    Detail(ItemId),
    Add(NewItem),
    Update(ItemId, ItemPatch),
    Retag(ItemId, Vec<String>, Vec<String>),
    Comment(ItemId, String),
    Link(ItemId, ItemId, Relation),
    Archive(ItemId),
    Purge(ItemId),
    /// Full-text search; `for_filter` results narrow the current list, else they feed global search.
    Search {
        query: String,
        kind: Option<labbook::model::Kind>,
        for_filter: bool,
    },
    ImportBibtex(PathBuf),
    /// Curves and log tail of a run.
    RunView(labbook::model::RunId),
    /// Several runs side by side: overlaid curves and the config keys that differ.
    CompareRuns(Vec<labbook::model::RunId>),
    /// Stop a run (queued: cancelled; running: SIGTERM to its worker).
    CancelRun(labbook::model::RunId),
    Shutdown,
}

/// Everything the lists need, loaded in one go.
#[derive(Debug, Clone, Default)]
pub struct Data {
    pub items: Vec<Item>,
    /// Links per item rowid.
    pub link_counts: HashMap<i64, i64>,
    pub runs: Vec<Run>,
    /// How the notebook stands with GitHub (all zero when sync is not used).
    pub sync: labbook::github::SyncSummary,
}

/// What the detail pane shows beyond the item itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detail {
    pub links: Vec<LinkView>,
    pub comments: Vec<Comment>,
    pub history: Vec<HistoryEntry>,
    /// The item's GitHub issue and sync state, when it has one.
    pub sync: Option<labbook::github::ItemSync>,
    /// An experiment's runs, newest first.
    pub runs: Vec<labbook::compare::ExperimentRun>,
}

// Messages are moved once per event; boxing the big variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Reply {
    Data(Data),
    Detail(ItemId, Item, Detail),
    /// A write succeeded; `select` is the item to show.
    Done {
        msg: String,
        select: Option<ItemId>,
    },
    Failed(String),
    /// `labbook sync` finished (a job: see `tui::jobs`).
    Synced(std::sync::Arc<crate::cli::sync::Synced>),
    /// A run started training in the background (a job: see `tui::jobs`).
    RunStarted(labbook::model::RunId),
    /// Remote run requests filed: (run, issue) (a job: see `tui::jobs`).
    RemoteFiled(Vec<(labbook::model::RunId, u64)>),
    /// The run picker's config files (a job: see `tui::jobs`).
    Configs(Vec<super::state::ConfigFile>),
    /// A sweep's runs were queued and its supervisor started (a job: see `tui::jobs`).
    SweepStarted {
        sweep: String,
        runs: Vec<labbook::model::RunId>,
    },
    RunView(RunView),
    Compare(CompareView),
    SearchHits {
        query: String,
        for_filter: bool,
        hits: Vec<(ItemId, String, String)>,
    },
}

/// A run's curves (metric, points) and the last lines of its log, for the run view.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub run: labbook::model::RunId,
    pub curves: Vec<(String, Vec<(f64, f64)>)>,
    pub log_tail: Vec<String>,
}

/// One run's points of one metric.
pub type RunCurve = (labbook::model::RunId, Vec<(f64, f64)>);

/// Runs compared in the TUI: per metric, one curve per run; the differing config keys.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareView {
    pub runs: Vec<labbook::model::RunId>,
    /// (metric, [(run, points)]).
    pub curves: Vec<(String, Vec<RunCurve>)>,
    /// (key, value per run).
    pub keys: Vec<(String, Vec<String>)>,
    /// (metric, final value per run) for loss and accuracy.
    pub finals: Vec<(String, Vec<String>)>,
}

/// Loads a comparison of `runs` for the Runs tab.
pub fn load_compare_view(
    store: &Store,
    runs: &[labbook::model::RunId],
) -> labbook::Result<CompareView> {
    let cmp = labbook::compare::compare(store, runs)?;
    let mut curves = Vec::new();
    for metric in ["loss", "accuracy"] {
        let mut per_run = Vec::new();
        for &id in runs {
            let v = load_run_view(store, id)?;
            if let Some((_, pts)) = v.curves.into_iter().find(|(k, _)| k == metric) {
                per_run.push((id, pts));
            }
        }
        if !per_run.is_empty() {
            curves.push((metric.to_string(), per_run));
        }
    }
    let keys = cmp
        .keys
        .iter()
        .map(|k| {
            (
                k.clone(),
                cmp.runs
                    .iter()
                    .map(|r| r.config[k].clone().unwrap_or_else(|| "-".into()))
                    .collect(),
            )
        })
        .collect();
    let finals = ["loss", "accuracy"]
        .iter()
        .map(|m| {
            (
                format!("final {m}"),
                cmp.runs
                    .iter()
                    .map(|r| {
                        r.final_metrics
                            .get(*m)
                            .map(|v| format!("{v:.4}"))
                            .unwrap_or_else(|| "-".into())
                    })
                    .collect(),
            )
        })
        .collect();
    Ok(CompareView {
        runs: runs.to_vec(),
        curves,
        keys,
        finals,
    })
}

/// Most points per curve sent to the chart (evenly thinned; the last point is kept).
const MAX_CHART_POINTS: usize = 600;

/// Loads the run view: loss, accuracy and the first eval accuracy, and 12 log lines.
pub fn load_run_view(store: &Store, id: labbook::model::RunId) -> labbook::Result<RunView> {
    let keys = store.metric_keys(id)?;
    let mut wanted: Vec<String> = ["loss", "accuracy"]
        .into_iter()
        .filter(|k| keys.iter().any(|x| x == k))
        .map(str::to_string)
        .collect();
    wanted.extend(keys.iter().find(|k| k.starts_with("eval/acc")).cloned());
    let mut curves = Vec::new();
    for k in wanted {
        let s = store.metric_series(id, &k)?;
        let stride = s.len().div_ceil(MAX_CHART_POINTS).max(1);
        let mut pts: Vec<(f64, f64)> = s
            .iter()
            .step_by(stride)
            .map(|&(x, y)| (x as f64, y))
            .collect();
        if let Some(&(x, y)) = s.last()
            && pts.last().map(|p| p.0) != Some(x as f64)
        {
            pts.push((x as f64, y));
        }
        curves.push((k, pts));
    }
    let log = labbook::recorder::run_dir(store.path(), id).join("log.txt");
    let log_tail = std::fs::read_to_string(&log)
        .map(|t| {
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(12)..]
                .iter()
                .map(|l| l.to_string())
                .collect()
        })
        .unwrap_or_default();
    Ok(RunView {
        run: id,
        curves,
        log_tail,
    })
}

/// Loads the lists (used by the worker and the benchmark).
pub fn load(store: &Store) -> labbook::Result<Data> {
    Ok(Data {
        items: store.list(&ListFilter::default())?,
        link_counts: store.link_counts()?,
        runs: store.list_runs(&RunFilter::default())?,
        sync: store.sync_summary().unwrap_or_default(),
    })
}

pub fn load_detail(store: &Store, id: ItemId) -> labbook::Result<(Item, Detail)> {
    Ok((
        store.get(id)?,
        Detail {
            links: store.links_of(id)?,
            comments: store.comments(id)?,
            history: store.history(id)?,
            // A damaged sync record must not hide the item; `labbook sync` reports it.
            sync: store.sync_state(id).ok().flatten(),
            runs: labbook::compare::experiment_runs(store, id)?,
        },
    ))
}

/// How often the TUI looks for runs whose worker died.
const REAP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn data_version(store: &Store) -> i64 {
    store
        .conn()
        .pragma_query_value(None, "data_version", |r| r.get(0))
        .unwrap_or(0)
}

/// Runs the worker loop until `Shutdown` or the UI hangs up. `wake` is called after
/// each reply so the UI can redraw.
pub fn run(mut store: Store, rx: Receiver<Request>, tx: Sender<Reply>) {
    // Runs whose worker died are marked crashed on start, and every few seconds after.
    let _ = store.reap_crashed();
    let mut last_reap = Instant::now();
    let mut version = data_version(&store);
    let mut shown: Option<ItemId> = None;
    let mut last_poll = Instant::now();
    loop {
        let first = match rx.recv_timeout(POLL) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Coalesce: take everything queued; only the last detail request matters.
        let mut batch: Vec<Request> = first.into_iter().collect();
        batch.extend(rx.try_iter());
        if let Some(last_detail) = batch.iter().rposition(|r| matches!(r, Request::Detail(_))) {
            let mut i = 0;
            batch.retain(|r| {
                let keep = !matches!(r, Request::Detail(_)) || i == last_detail;
                i += 1;
                keep
            });
        }
        for req in batch {
            if matches!(req, Request::Shutdown) {
                return;
            }
            if let Request::Detail(id) = req {
                shown = Some(id);
            }
            for reply in handle(&mut store, req, &mut shown) {
                if tx.send(reply).is_err() {
                    return;
                }
            }
        }
        if last_poll.elapsed() >= POLL {
            last_poll = Instant::now();
            if last_reap.elapsed() >= REAP_EVERY {
                last_reap = Instant::now();
                let _ = store.reap_crashed();
            }
            let v = data_version(&store);
            // Only other connections' commits change it, so our own writes do not reload twice.
            if v != version {
                version = v;
                tracing::debug!("notebook changed on disk; reloading");
                let mut replies = handle(&mut store, Request::LoadAll, &mut shown);
                if let Some(id) = shown {
                    replies.extend(handle(&mut store, Request::Detail(id), &mut shown));
                }
                for r in replies {
                    if tx.send(r).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn handle(store: &mut Store, req: Request, shown: &mut Option<ItemId>) -> Vec<Reply> {
    let fail = |e: labbook::Error| vec![Reply::Failed(e.to_string())];
    let write = |store: &mut Store,
                 shown: &mut Option<ItemId>,
                 r: labbook::Result<(String, Option<ItemId>)>| {
        match r {
            Ok((msg, select)) => {
                let mut out = vec![Reply::Done { msg, select }];
                out.extend(handle(store, Request::LoadAll, shown));
                if let Some(id) = select.or(*shown) {
                    *shown = Some(id);
                    out.extend(handle(store, Request::Detail(id), shown));
                }
                out
            }
            Err(e) => vec![Reply::Failed(e.to_string())],
        }
    };
    match req {
        Request::LoadAll => match load(store) {
            Ok(d) => vec![Reply::Data(d)],
            Err(e) => fail(e),
        },
        Request::Detail(id) => match load_detail(store, id) {
            Ok((item, d)) => vec![Reply::Detail(id, item, d)],
            Err(labbook::Error::NotFound(_)) => Vec::new(),
            Err(e) => fail(e),
        },
        Request::Add(new) => {
            let r = store
                .add_item(new)
                .map(|i| (format!("added {}  {}", i.id, i.title), Some(i.id)));
            write(store, shown, r)
        }
        Request::Update(id, patch) => {
            let r = store
                .update(id, &patch)
                .map(|i| (format!("saved {}", i.id), Some(i.id)));
            write(store, shown, r)
        }
        Request::Retag(id, add, remove) => {
            let r = store.retag(id, &add, &remove).map(|i| {
                let tags = if i.tags.is_empty() {
                    "no tags".to_string()
                } else {
                    i.tags.join(", ")
                };
                (format!("{}: {tags}", i.id), Some(i.id))
            });
            write(store, shown, r)
        }
        Request::Comment(id, text) => {
            let r = store
                .comment(id, &text)
                .map(|_| (format!("commented on {id}"), Some(id)));
            write(store, shown, r)
        }
        Request::Link(a, b, rel) => {
            let r = store.link(a, b, Some(rel)).map(|(rel, new)| {
                let what = if new { "linked" } else { "already linked" };
                (format!("{what}: {a} {rel} {b}"), Some(a))
            });
            write(store, shown, r)
        }
        Request::Archive(id) => {
            let r = store.archive(id, true).map(|_| {
                *shown = None;
                (
                    format!("archived {id} (`labbook rm {id} --restore` brings it back)"),
                    None,
                )
            });
            write(store, shown, r)
        }
        Request::Purge(id) => {
            let r = store.purge(id).map(|_| {
                *shown = None;
                (format!("deleted {id}"), None)
            });
            write(store, shown, r)
        }
        Request::Search {
            query,
            kind,
            for_filter,
        } => match store.search(&query, kind, if for_filter { 500 } else { 30 }) {
            Ok(hits) => vec![Reply::SearchHits {
                query,
                for_filter,
                hits: hits
                    .into_iter()
                    .map(|h| (h.id, h.title, h.snippet))
                    .collect(),
            }],
            Err(e) => fail(e),
        },
        Request::ImportBibtex(path) => {
            let r = std::fs::read_to_string(&path)
                .map_err(|e| labbook::Error::io(&path, e))
                .and_then(|text| store.import_bibtex(&text, &path.display().to_string()))
                .map(|rep| {
                    let first = rep.added.first().map(|(_, id)| *id);
                    (
                        format!(
                            "imported {} papers, skipped {}",
                            rep.added.len(),
                            rep.skipped.len()
                        ),
                        first,
                    )
                });
            write(store, shown, r)
        }
        Request::RunView(id) => match load_run_view(store, id) {
            Ok(v) => vec![Reply::RunView(v)],
            Err(e) => vec![Reply::Failed(e.to_string())],
        },
        Request::CompareRuns(ids) => match load_compare_view(store, &ids) {
            Ok(v) => vec![Reply::Compare(v)],
            Err(e) => vec![Reply::Failed(e.to_string())],
        },
        Request::CancelRun(id) => {
            let r = labbook::lifecycle::request_stop(store, id).map(|msg| (msg, None));
            write(store, shown, r)
        }
        Request::Shutdown => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labbook::model::Kind;
    use std::sync::mpsc;

    fn next_data(rx: &Receiver<Reply>) -> Data {
        loop {
            match rx.recv_timeout(Duration::from_secs(5)).expect("a reply") {
                Reply::Data(d) => return d,
                Reply::Failed(e) => panic!("{e}"),
                _ => {}
            }
        }
    }

    fn next_done(rx: &Receiver<Reply>) -> (String, Option<ItemId>) {
        loop {
            match rx.recv_timeout(Duration::from_secs(5)).expect("a reply") {
                Reply::Done { msg, select } => return (msg, select),
                Reply::Failed(e) => panic!("{e}"),
                _ => {}
            }
        }
    }

    #[test]
    fn answers_requests_and_notices_other_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tracker.db");
        let store = Store::open(&path, "ui").unwrap();
        let (req_tx, req_rx) = mpsc::channel();
        let (rep_tx, rep_rx) = mpsc::channel();
        let worker = std::thread::spawn(move || run(store, req_rx, rep_tx));

        req_tx
            .send(Request::Add(NewItem::new(Kind::Task, "From the TUI")))
            .unwrap();
        let (msg, select) = next_done(&rep_rx);
        assert!(msg.starts_with("added T-1"), "{msg}");
        assert_eq!(select.unwrap().to_string(), "T-1");
        assert_eq!(next_data(&rep_rx).items.len(), 1);

        let bib = dir.path().join("refs.bib");
        std::fs::write(
            &bib,
            "@article{gu2023mamba, title={Mamba}, author={Gu, Albert and Dao, Tri}, year={2023}}",
        )
        .unwrap();
        req_tx.send(Request::ImportBibtex(bib)).unwrap();
        assert_eq!(next_done(&rep_rx).0, "imported 1 papers, skipped 0");
        assert_eq!(next_data(&rep_rx).items.len(), 2);

        // Another connection (another process, in real life) writes: the worker reloads.
        let mut other = Store::open(&path, "cli").unwrap();
        other
            .add_item(NewItem::new(Kind::Idea, "From the CLI"))
            .unwrap();
        let d = next_data(&rep_rx);
        assert!(d.items.iter().any(|i| i.title == "From the CLI"));

        req_tx.send(Request::Shutdown).unwrap();
        worker.join().unwrap();
    }
}
