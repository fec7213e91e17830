//! `R`: start a run from a config file. A fuzzy-filtered list of `configs/**/*.toml` (the
//! ones recent runs used first) with the chosen file's text beside it, a field of `--set`
//! overrides, and local or remote; on an experiment the run is recorded under it.
use labbook::model::ItemId;
use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32Str};

use super::{App, Mode, edit_text};
use crate::tui::action::{Action, Effect};

/// A run config the picker offers.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    /// As shown and as recorded: relative to the notebook's directory (`configs/x.toml`).
    pub path: String,
    /// Where to read it from.
    pub abs: std::path::PathBuf,
    /// Its text, for the preview.
    pub text: String,
    /// A recent run used it.
    pub recent: bool,
}

/// Which part of the picker keys go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickerField {
    Config,
    Overrides,
    Where,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunPickerState {
    /// The experiment the run is recorded under (`None` from the Runs tab).
    pub experiment: Option<ItemId>,
    /// Recent first; `None` while the list loads.
    pub configs: Option<Vec<ConfigFile>>,
    pub query: String,
    /// Indices into `configs` that match `query`, best first.
    pub matches: Vec<usize>,
    pub selected: usize,
    /// `k=v` pairs (or `--set k=v`), space-separated.
    pub overrides: String,
    pub field: PickerField,
    pub remote: bool,
}

impl RunPickerState {
    pub fn new(experiment: Option<ItemId>) -> Self {
        RunPickerState {
            experiment,
            configs: None,
            query: String::new(),
            matches: Vec::new(),
            selected: 0,
            overrides: String::new(),
            field: PickerField::Config,
            remote: false,
        }
    }

    /// The config under the cursor.
    pub fn chosen(&self) -> Option<&ConfigFile> {
        let i = *self.matches.get(self.selected)?;
        self.configs.as_ref()?.get(i)
    }

    /// Recomputes the matches of `query` (all configs, in their order, when it is empty).
    pub fn refilter(&mut self) {
        let Some(configs) = &self.configs else {
            self.matches.clear();
            return;
        };
        if self.query.trim().is_empty() {
            self.matches = (0..configs.len()).collect();
        } else {
            let mut matcher = Matcher::new(Config::DEFAULT.match_paths());
            let pattern = Pattern::parse(&self.query, CaseMatching::Smart, Normalization::Smart);
            let mut buf = Vec::new();
            let mut scored: Vec<(u32, usize)> = configs
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    pattern
                        .score(Utf32Str::new(&c.path, &mut buf), &mut matcher)
                        .map(|s| (s, i))
                })
                .collect();
            scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            self.matches = scored.into_iter().map(|(_, i)| i).collect();
        }
        self.selected = self.selected.min(self.matches.len().saturating_sub(1));
    }

    /// `labbook run` arguments for the chosen config: the file, each override as
    /// `--set k=v`, and the experiment.
    pub fn run_args(&self) -> Option<Vec<String>> {
        let c = self.chosen()?;
        let mut args = vec![c.abs.display().to_string()];
        for word in self.overrides.split_whitespace() {
            if word == "--set" {
                continue;
            }
            args.extend(["--set".to_string(), word.to_string()]);
        }
        if let Some(e) = self.experiment {
            args.extend(["-e".to_string(), e.to_string()]);
        }
        Some(args)
    }
}

pub(super) fn run_picker(app: &mut App, mut p: RunPickerState, action: Action) -> Vec<Effect> {
    let text = match p.field {
        PickerField::Config => Some(&mut p.query),
        PickerField::Overrides => Some(&mut p.overrides),
        PickerField::Where => None,
    };
    if let Some(text) = text
        && edit_text(text, &action)
    {
        if p.field == PickerField::Config {
            p.selected = 0;
            p.refilter();
        }
        app.mode = Mode::RunPicker(p);
        return Vec::new();
    }
    match action {
        Action::Cancel => return Vec::new(),
        Action::Quit => return vec![Effect::Quit],
        Action::SwitchField => {
            p.field = match p.field {
                PickerField::Config => PickerField::Overrides,
                PickerField::Overrides => PickerField::Where,
                PickerField::Where => PickerField::Config,
            };
        }
        Action::NextField if p.field == PickerField::Config => {
            p.selected = (p.selected + 1).min(p.matches.len().saturating_sub(1));
        }
        Action::PrevField if p.field == PickerField::Config => {
            p.selected = p.selected.saturating_sub(1);
        }
        Action::ChoicePrev | Action::ChoiceNext | Action::Char(' ')
            if p.field == PickerField::Where =>
        {
            p.remote = !p.remote;
        }
        Action::Submit => match p.run_args() {
            Some(args) => {
                let fx = if p.remote {
                    app.info("filing the run request on GitHub…");
                    Effect::LaunchRemote(args)
                } else {
                    app.info("starting the run…");
                    Effect::LaunchRun(args)
                };
                return vec![fx];
            }
            None => app.error("no config chosen"),
        },
        _ => {}
    }
    app.mode = Mode::RunPicker(p);
    Vec::new()
}
