//! Keys to actions. Normal-mode bindings are a table of named commands with default keys;
//! `[keys]` in `configs/labbook.toml` replaces a command's keys (`quit = ["q", "ctrl-c"]`).
//! The help screen is generated from this table, so it always matches what the keys do.
use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::Action;
use super::tab::Tab;

/// (command name, section, help text, default keys)
pub const COMMANDS: &[(&str, &str, &str, &[&str])] = &[
    (
        "quit",
        "App",
        "quit (asks if an edit is unsaved)",
        &["q", "ctrl-c"],
    ),
    ("help", "App", "this help", &["?", "f1"]),
    ("reload", "App", "reload from disk", &["ctrl-r"]),
    (
        "rerun",
        "Runs",
        "re-run the run with its config (elsewhere: reload)",
        &["r"],
    ),
    ("next_tab", "Move", "next tab", &["tab", "]"]),
    ("prev_tab", "Move", "previous tab", &["backtab", "["]),
    ("tab_1", "Move", "Tasks tab", &["1"]),
    ("tab_2", "Move", "Papers tab", &["2"]),
    ("tab_3", "Move", "Ideas tab", &["3"]),
    ("tab_4", "Move", "Experiments tab", &["4"]),
    ("tab_5", "Move", "Runs tab", &["5"]),
    ("down", "Move", "next row / link", &["j", "down"]),
    ("up", "Move", "previous row / link", &["k", "up"]),
    ("page_down", "Move", "page down", &["pagedown", "ctrl-d"]),
    ("page_up", "Move", "page up", &["pageup", "ctrl-u"]),
    ("top", "Move", "first row", &["g", "home"]),
    ("bottom", "Move", "last row", &["G", "end"]),
    (
        "enter",
        "Move",
        "focus links / follow link",
        &["enter", "l", "right"],
    ),
    (
        "leave",
        "Move",
        "back to the list / clear filter",
        &["esc", "h", "left"],
    ),
    (
        "back",
        "Move",
        "go back (like a browser)",
        &["backspace", "-"],
    ),
    (
        "scroll_down",
        "Move",
        "scroll the detail pane",
        &["J", "ctrl-e"],
    ),
    (
        "scroll_up",
        "Move",
        "scroll the detail pane up",
        &["K", "ctrl-y"],
    ),
    ("sort", "Find", "sort by the next column", &["o"]),
    ("reverse", "Find", "reverse the sort", &["O"]),
    ("filter", "Find", "filter this list as you type", &["/"]),
    (
        "search",
        "Find",
        "search everything, jump to a hit",
        &["s", "ctrl-f"],
    ),
    (
        "add",
        "Edit",
        "add an item to this tab · start a run",
        &["a"],
    ),
    ("edit", "Edit", "edit fields in a form", &["e"]),
    ("edit_body", "Edit", "edit in $EDITOR", &["E"]),
    (
        "status",
        "Edit",
        "next status · mark a run to compare",
        &["x", "space"],
    ),
    ("tag", "Edit", "tag (+add -remove)", &["t"]),
    (
        "comment",
        "Edit",
        "comment · a run: edit a copy of its config, then run it",
        &["c"],
    ),
    ("link", "Edit", "link to any item (fuzzy picker)", &["L"]),
    (
        "archive",
        "Edit",
        "archive (asks first) · stop a run",
        &["d"],
    ),
    ("delete", "Edit", "delete for good (asks first)", &["D"]),
    ("log_scale", "Runs", "curves: log scale on/off", &["%"]),
    ("smooth", "Runs", "curves: smoothing 1/10/50", &["~"]),
    ("import", "Papers", "import a BibTeX file", &["i"]),
    (
        "sync",
        "Edit",
        "sync with GitHub (in the background)",
        &["S"],
    ),
    (
        "run",
        "Runs",
        "start a run: pick a config (on an experiment: recorded under it)",
        &["R"],
    ),
    (
        "open",
        "Papers",
        "open the paper's URL / arXiv page, else the item's GitHub issue",
        &["u"],
    ),
    (
        "copy_key",
        "Papers",
        "copy the citation key (OSC 52)",
        &["y"],
    ),
];

/// Keys in text fields, prompts and pickers (fixed).
pub const TEXT_KEYS: &[(&str, &str)] = &[
    ("enter", "save / choose"),
    ("esc", "cancel"),
    ("tab / down", "next field / option"),
    ("backtab / up", "previous field / option"),
    ("backspace", "delete a character"),
    ("ctrl-u", "clear the field"),
    ("ctrl-r", "link picker: next relation"),
    ("tab", "run picker: configs / overrides / local or remote"),
];

fn action_for(name: &str) -> Action {
    match name {
        "quit" => Action::Quit,
        "help" => Action::Help,
        "reload" => Action::Reload,
        "next_tab" => Action::NextTab,
        "prev_tab" => Action::PrevTab,
        "tab_1" => Action::Tab(Tab::Tasks),
        "tab_2" => Action::Tab(Tab::Papers),
        "tab_3" => Action::Tab(Tab::Ideas),
        "tab_4" => Action::Tab(Tab::Experiments),
        "tab_5" => Action::Tab(Tab::Runs),
        "down" => Action::Down,
        "up" => Action::Up,
        "page_down" => Action::PageDown,
        "page_up" => Action::PageUp,
        "top" => Action::Top,
        "bottom" => Action::Bottom,
        "enter" => Action::Enter,
        "leave" => Action::Leave,
        "back" => Action::Back,
        "scroll_down" => Action::ScrollDetailDown,
        "scroll_up" => Action::ScrollDetailUp,
        "sort" => Action::CycleSort,
        "reverse" => Action::ReverseSort,
        "filter" => Action::Filter,
        "search" => Action::Search,
        "add" => Action::Add,
        "edit" => Action::EditFields,
        "edit_body" => Action::EditBody,
        "status" => Action::CycleStatus,
        "tag" => Action::Tag,
        "comment" => Action::Comment,
        "link" => Action::Link,
        "archive" => Action::Archive,
        "delete" => Action::Delete,
        "import" => Action::ImportBibtex,
        "log_scale" => Action::ToggleLogScale,
        "smooth" => Action::CycleSmoothing,
        "open" => Action::OpenUrl,
        "sync" => Action::Sync,
        "run" => Action::RunPicker,
        "rerun" => Action::Rerun,
        "copy_key" => Action::CopyKey,
        other => unreachable!("unknown command {other}"),
    }
}

/// A key with its modifiers, normalised (shift is part of the character).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn from_event(e: &KeyEvent) -> Key {
        Key {
            code: e.code,
            ctrl: e.modifiers.contains(KeyModifiers::CONTROL),
            alt: e.modifiers.contains(KeyModifiers::ALT),
        }
    }

    pub fn parse(s: &str) -> Result<Key, String> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = s;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.len() > 1 && (lower.starts_with("ctrl-") || lower.starts_with("c-")) {
                ctrl = true;
                rest = &rest[rest.find('-').unwrap() + 1..];
            } else if rest.len() > 1 && (lower.starts_with("alt-") || lower.starts_with("m-")) {
                alt = true;
                rest = &rest[rest.find('-').unwrap() + 1..];
            } else {
                break;
            }
        }
        let code = match rest.to_ascii_lowercase().as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" | "shift-tab" => KeyCode::BackTab,
            "backspace" | "bs" => KeyCode::Backspace,
            "delete" | "del" => KeyCode::Delete,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pageup" | "pgup" => KeyCode::PageUp,
            "pagedown" | "pgdn" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "space" => KeyCode::Char(' '),
            f if f.len() >= 2 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                KeyCode::F(f[1..].parse().unwrap())
            }
            _ => {
                let mut chars = rest.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(if ctrl { c.to_ascii_lowercase() } else { c }),
                    _ => return Err(format!("`{s}` is not a key")),
                }
            }
        };
        Ok(Key { code, ctrl, alt })
    }
}

#[derive(Debug, Clone)]
pub struct Keymap {
    map: HashMap<Key, &'static str>,
    /// Keys per command, as typed in the config, for the help screen.
    keys: HashMap<&'static str, Vec<String>>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap::from_config(None).expect("default keys parse")
    }
}

impl Keymap {
    /// Default keys, with the config's `[keys]` table replacing a command's keys.
    pub fn from_config(table: Option<&toml::Table>) -> Result<Keymap, String> {
        let mut keys: HashMap<&'static str, Vec<String>> = COMMANDS
            .iter()
            .map(|(n, _, _, k)| (*n, k.iter().map(|s| s.to_string()).collect()))
            .collect();
        if let Some(table) = table {
            for (name, v) in table {
                let Some((cmd, ..)) = COMMANDS.iter().find(|c| c.0 == name) else {
                    let known: Vec<&str> = COMMANDS.iter().map(|c| c.0).collect();
                    return Err(format!(
                        "[keys] {name}: unknown command (known: {})",
                        known.join(", ")
                    ));
                };
                let list = match v {
                    toml::Value::String(s) => vec![s.clone()],
                    toml::Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| format!("[keys] {name}: expected key names in quotes"))?,
                    _ => return Err(format!("[keys] {name}: expected \"key\" or [\"key\", …]")),
                };
                keys.insert(cmd, list);
            }
        }
        let mut map = HashMap::new();
        for (name, ..) in COMMANDS {
            for k in &keys[name] {
                let key = Key::parse(k).map_err(|e| format!("[keys] {name}: {e}"))?;
                if let Some(prev) = map.insert(key, *name)
                    && prev != *name
                {
                    // A configured key wins over a default one; two configured ones clash.
                    let prev_configured = table.is_some_and(|t| t.contains_key(prev));
                    let this_configured = table.is_some_and(|t| t.contains_key(*name));
                    if prev_configured && this_configured {
                        return Err(format!("[keys] `{k}` is bound to both {prev} and {name}"));
                    }
                    if prev_configured {
                        map.insert(key, prev);
                    }
                }
            }
        }
        // Drop displayed keys that lost to a configured binding.
        for (name, list) in keys.iter_mut() {
            list.retain(|k| Key::parse(k).ok().and_then(|key| map.get(&key)) == Some(name));
        }
        Ok(Keymap { map, keys })
    }

    pub fn action(&self, e: &KeyEvent) -> Option<Action> {
        let key = Key::from_event(e);
        let name = self.map.get(&key).or_else(|| {
            // Terminals report some shifted characters with SHIFT; ignore it.
            self.map.get(&Key { alt: false, ..key })
        })?;
        Some(action_for(name))
    }

    /// The first key for a command, for hints ("a add").
    pub fn hint(&self, name: &str) -> String {
        self.keys
            .get(name)
            .and_then(|k| k.first().cloned())
            .unwrap_or_else(|| "?".into())
    }

    /// (section, keys, help) rows for the help screen, in table order.
    pub fn help_rows(&self) -> Vec<(&'static str, String, &'static str)> {
        COMMANDS
            .iter()
            .map(|(name, section, help, _)| (*section, self.keys[name].join(" "), *help))
            .collect()
    }
}

/// Text-entry keys (fixed): what a key means in a field, prompt or picker.
pub fn text_action(e: &KeyEvent) -> Option<Action> {
    let ctrl = e.modifiers.contains(KeyModifiers::CONTROL);
    Some(match e.code {
        KeyCode::Enter => Action::Submit,
        KeyCode::Esc => Action::Cancel,
        KeyCode::Tab | KeyCode::Down => Action::NextField,
        KeyCode::BackTab | KeyCode::Up => Action::PrevField,
        KeyCode::Left => Action::ChoicePrev,
        KeyCode::Right => Action::ChoiceNext,
        KeyCode::Backspace => Action::Backspace,
        KeyCode::Char('u') if ctrl => Action::ClearInput,
        KeyCode::Char('c') if ctrl => Action::Quit,
        KeyCode::Char('n') if ctrl => Action::NextField,
        KeyCode::Char('r') if ctrl => Action::CycleRelation,
        KeyCode::Char('p') if ctrl => Action::PrevField,
        // Alt+key is what a terminal makes of a fast Esc then key; it is not text.
        KeyCode::Char(c) if !ctrl && !e.modifiers.contains(KeyModifiers::ALT) => Action::Char(c),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn defaults_vim_and_arrows() {
        let k = Keymap::default();
        assert!(matches!(
            k.action(&ev(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Action::Down)
        ));
        assert!(matches!(
            k.action(&ev(KeyCode::Down, KeyModifiers::NONE)),
            Some(Action::Down)
        ));
        assert!(matches!(
            k.action(&ev(KeyCode::Char('f'), KeyModifiers::CONTROL)),
            Some(Action::Search)
        ));
        assert!(matches!(
            k.action(&ev(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Some(Action::Bottom)
        ));
        assert!(
            k.action(&ev(KeyCode::Char('Z'), KeyModifiers::SHIFT))
                .is_none()
        );
    }

    #[test]
    fn shipped_config_parses() {
        let text = include_str!("../../configs/labbook.toml");
        let cfg = labbook::config::AppConfig::parse(text, std::path::Path::new("x")).unwrap();
        let k = Keymap::from_config(cfg.keys.as_ref()).unwrap();
        assert!(matches!(
            k.action(&ev(KeyCode::Char('L'), KeyModifiers::SHIFT)),
            Some(Action::Link)
        ));
        crate::tui::theme::Theme::from_config(cfg.theme.as_ref(), false).unwrap();
    }

    #[test]
    fn config_rebinds_and_help_follows() {
        let t: toml::Table = toml::from_str("quit = \"Q\"\nadd = [\"n\", \"ctrl-n\"]").unwrap();
        let k = Keymap::from_config(Some(&t)).unwrap();
        assert!(
            k.action(&ev(KeyCode::Char('q'), KeyModifiers::NONE))
                .is_none()
        );
        assert!(matches!(
            k.action(&ev(KeyCode::Char('Q'), KeyModifiers::SHIFT)),
            Some(Action::Quit)
        ));
        assert!(matches!(
            k.action(&ev(KeyCode::Char('n'), KeyModifiers::CONTROL)),
            Some(Action::Add)
        ));
        let help = k.help_rows();
        assert!(
            help.iter()
                .any(|(_, keys, h)| keys == "n ctrl-n" && h.starts_with("add"))
        );
        // A configured key takes over a default one.
        let t: toml::Table = toml::from_str("link = \"l\"").unwrap();
        let k = Keymap::from_config(Some(&t)).unwrap();
        assert!(matches!(
            k.action(&ev(KeyCode::Char('l'), KeyModifiers::NONE)),
            Some(Action::Link)
        ));
        assert!(
            k.help_rows()
                .iter()
                .any(|(_, keys, h)| keys == "enter right" && h.starts_with("focus"))
        );
        let bad: toml::Table = toml::from_str("qiut = \"q\"").unwrap();
        assert!(
            Keymap::from_config(Some(&bad))
                .unwrap_err()
                .contains("unknown command")
        );
    }
}
