//! Everything that can happen to the app: one `Action` enum (from keys, mouse, the
//! worker and the clock), and the `Effect`s that `update` asks the run loop to perform.
use labbook::model::{ItemId, ItemPatch, NewItem, Relation};

use super::tab::Tab;
use super::worker::{Reply, Request};

/// What the user (through the keymap) or the outside world did.
// Messages are moved once per event; boxing the big variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Action {
    // Application
    Quit,
    Help,
    Reload,
    // Navigation
    NextTab,
    PrevTab,
    Tab(Tab),
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Move focus into the detail pane / follow the selected link.
    Enter,
    /// Move focus back to the list (or close the filter).
    Leave,
    /// Browser-style back.
    Back,
    ScrollDetailDown,
    ScrollDetailUp,
    CycleSort,
    ReverseSort,
    // Finding
    Filter,
    Search,
    // Editing
    Add,
    EditFields,
    EditBody,
    CycleStatus,
    Tag,
    Comment,
    Link,
    Archive,
    Delete,
    // Runs
    ToggleLogScale,
    CycleSmoothing,
    // Papers
    ImportBibtex,
    OpenUrl,
    /// Sync with GitHub in the background.
    Sync,
    /// Start a run from a config file (picker); on an experiment, recorded under it.
    RunPicker,
    /// Runs tab: start the selected run again with its config snapshot (elsewhere: reload).
    Rerun,
    /// Tab in the run picker: the next part (configs, overrides, local/remote).
    SwitchField,
    CopyKey,
    // Text entry (in filters, prompts, forms, pickers)
    Char(char),
    Backspace,
    ClearInput,
    NextField,
    PrevField,
    /// ← / → in a field: the previous / next choice (the status field).
    ChoicePrev,
    ChoiceNext,
    Submit,
    /// In the link picker: next relation.
    CycleRelation,
    Cancel,
    // Mouse
    Click {
        col: u16,
        row: u16,
    },
    ScrollAt {
        col: u16,
        row: u16,
        down: bool,
    },
    Resize(u16, u16),
    // From the worker
    Worker(Reply),
}

/// Side effects `update` asks for; the run loop performs them.
// Messages are moved once per event; boxing the big variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Effect {
    Send(Request),
    /// Suspend the TUI and edit this item's text view in `$EDITOR`.
    EditInEditor(ItemId),
    OpenUrl(String),
    Copy(String),
    /// `labbook run ARGS... --detach` as a job (it validates, records, starts the worker
    /// process); a `Reply::RunStarted` or `Reply::Failed` comes back.
    LaunchRun(Vec<String>),
    /// `labbook sync` as a job; a `Reply::Synced` or `Reply::Failed` comes back.
    Sync,
    /// Read `configs/**/*.toml` (and which ones recent runs used) as a job; a
    /// `Reply::Configs` comes back.
    ListConfigs,
    /// Write `config` (a run's snapshot) to `runs/R-n/<dir>/<name>.toml`, optionally let
    /// the user edit it in `$EDITOR`, then start a run from it (like `LaunchRun`), under
    /// `experiment`.
    RunFromSnapshot {
        run: labbook::model::RunId,
        name: String,
        config: String,
        experiment: Option<ItemId>,
        edit: bool,
    },
    /// `labbook run ARGS... --remote` as a job (files the request on GitHub); a
    /// `Reply::RemoteFiled` or `Reply::Failed` comes back.
    LaunchRemote(Vec<String>),
    Quit,
}

impl Effect {
    pub fn add(new: NewItem) -> Effect {
        Effect::Send(Request::Add(new))
    }
    pub fn update(id: ItemId, patch: ItemPatch) -> Effect {
        Effect::Send(Request::Update(id, patch))
    }
    pub fn link(a: ItemId, b: ItemId, rel: Relation) -> Effect {
        Effect::Send(Request::Link(a, b, rel))
    }
}
