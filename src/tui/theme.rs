//! Colours and text styles. Defaults use the terminal's own ANSI palette (so they follow
//! light and dark themes) and never set a background except for the selection, which is
//! reversed video. `NO_COLOR` drops every colour and keeps bold/underline/reverse.
//! `[theme]` in `configs/labbook.toml` overrides a slot: `accent = "magenta"`, `dim = "#808080"`.
use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub color: bool,
    pub accent: Color,
    pub dim: Color,
    pub good: Color,
    pub warn: Color,
    pub bad: Color,
    pub link: Color,
    pub tag: Color,
}

pub const SLOTS: [&str; 7] = ["accent", "dim", "good", "warn", "bad", "link", "tag"];

impl Default for Theme {
    fn default() -> Self {
        Theme {
            color: true,
            accent: Color::Cyan,
            dim: Color::DarkGray,
            good: Color::Green,
            warn: Color::Yellow,
            bad: Color::Red,
            link: Color::Blue,
            tag: Color::Magenta,
        }
    }
}

impl Theme {
    pub fn monochrome() -> Theme {
        Theme {
            color: false,
            ..Theme::default()
        }
    }

    /// The theme from the config's `[theme]` table; `no_color` wins over everything.
    pub fn from_config(table: Option<&toml::Table>, no_color: bool) -> Result<Theme, String> {
        if no_color {
            return Ok(Theme::monochrome());
        }
        let mut t = Theme::default();
        let Some(table) = table else { return Ok(t) };
        for (k, v) in table {
            let s = v
                .as_str()
                .ok_or_else(|| format!("[theme] {k}: expected a colour name in quotes"))?;
            let c: Color = s
                .parse()
                .map_err(|_| format!("[theme] {k}: `{s}` is not a colour"))?;
            match k.as_str() {
                "accent" => t.accent = c,
                "dim" => t.dim = c,
                "good" => t.good = c,
                "warn" => t.warn = c,
                "bad" => t.bad = c,
                "link" => t.link = c,
                "tag" => t.tag = c,
                _ => {
                    return Err(format!(
                        "[theme] {k}: unknown slot (known: {})",
                        SLOTS.join(", ")
                    ));
                }
            }
        }
        Ok(t)
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn title(&self) -> Style {
        self.fg(self.accent).add_modifier(Modifier::BOLD)
    }
    pub fn heading(&self) -> Style {
        self.fg(self.accent).add_modifier(Modifier::BOLD)
    }
    pub fn dim(&self) -> Style {
        if self.color {
            Style::new().fg(self.dim)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
    pub fn key(&self) -> Style {
        self.fg(self.accent).add_modifier(Modifier::BOLD)
    }
    pub fn link(&self) -> Style {
        self.fg(self.link).add_modifier(Modifier::UNDERLINED)
    }
    pub fn tag(&self) -> Style {
        self.fg(self.tag)
    }
    pub fn error(&self) -> Style {
        self.fg(self.bad).add_modifier(Modifier::BOLD)
    }
    pub fn border(&self, focused: bool) -> Style {
        if focused {
            self.fg(self.accent)
        } else {
            self.dim()
        }
    }
    /// Status words: open ones plain, in-progress warm, finished green or grey.
    pub fn status(&self, kind: Option<labbook::model::Kind>, status: &str) -> Style {
        match kind {
            Some(k) => {
                let s = k.statuses();
                if status == s[0] {
                    Style::new()
                } else if status == s[1] {
                    self.fg(self.warn).add_modifier(Modifier::BOLD)
                } else if status == s[2] {
                    self.fg(self.good)
                } else {
                    self.dim()
                }
            }
            None => match status {
                "running" => self.fg(self.warn).add_modifier(Modifier::BOLD),
                "succeeded" => self.fg(self.good),
                "failed" | "crashed" => self.fg(self.bad),
                _ => self.dim(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_overrides_and_no_color() {
        let table: toml::Table = toml::from_str("accent = \"magenta\"\ndim = \"#808080\"").unwrap();
        let t = Theme::from_config(Some(&table), false).unwrap();
        assert_eq!(t.accent, Color::Magenta);
        assert_eq!(t.dim, Color::Rgb(128, 128, 128));
        assert_eq!(
            Theme::from_config(Some(&table), true).unwrap(),
            Theme::monochrome()
        );
        assert_eq!(Theme::monochrome().title().fg, None);
        let bad: toml::Table = toml::from_str("acent = \"red\"").unwrap();
        assert!(
            Theme::from_config(Some(&bad), false)
                .unwrap_err()
                .contains("unknown slot")
        );
    }
}
