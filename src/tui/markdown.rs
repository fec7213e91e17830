//! A small Markdown-to-`Line` renderer for the detail pane: headings, lists, quotes,
//! fenced code, `inline code`, **bold** and *italic*. Not a full CommonMark parser;
//! anything it does not know is shown as written.
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use super::theme::Theme;

pub fn render(text: &str, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let mut in_code = false;
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            out.push(Line::from(Span::styled(format!("  {line}"), theme.dim())));
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(h) = heading(trimmed) {
            out.push(Line::from(Span::styled(h.to_string(), theme.heading())));
        } else if let Some(rest) = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
            .or_else(|| trimmed.strip_prefix("+ "))
        {
            let mut spans = vec![Span::raw(format!("{}• ", " ".repeat(indent)))];
            spans.extend(inline(rest, theme));
            out.push(Line::from(spans));
        } else if let Some(rest) = trimmed.strip_prefix("> ") {
            let mut spans = vec![Span::styled("│ ", theme.dim())];
            spans.extend(
                inline(rest, theme)
                    .into_iter()
                    .map(|s| s.patch_style(Style::new().add_modifier(Modifier::ITALIC))),
            );
            out.push(Line::from(spans));
        } else {
            let mut spans = Vec::new();
            if indent > 0 {
                spans.push(Span::raw(" ".repeat(indent)));
            }
            spans.extend(inline(trimmed, theme));
            out.push(Line::from(spans));
        }
    }
    out
}

fn heading(line: &str) -> Option<&str> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
        Some(line[hashes..].trim())
    } else {
        None
    }
}

/// Inline markup: `code`, **bold**, *italic* / _italic_.
fn inline(text: &str, theme: &Theme) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    let flush = |plain: &mut String, spans: &mut Vec<Span<'static>>| {
        if !plain.is_empty() {
            spans.push(Span::raw(std::mem::take(plain)));
        }
    };
    while let Some(c) = rest.chars().next() {
        let styled = |delim: &str, style: Style| -> Option<(Span<'static>, usize)> {
            let after = rest.strip_prefix(delim)?;
            let end = after.find(delim)?;
            if end == 0 {
                return None;
            }
            Some((
                Span::styled(after[..end].to_string(), style),
                delim.len() * 2 + end,
            ))
        };
        let hit = match c {
            '`' => styled("`", theme.key().remove_modifier(Modifier::BOLD)),
            '*' => styled("**", Style::new().add_modifier(Modifier::BOLD))
                .or_else(|| styled("*", Style::new().add_modifier(Modifier::ITALIC))),
            '_' if plain.is_empty() || plain.ends_with(' ') => {
                styled("_", Style::new().add_modifier(Modifier::ITALIC))
            }
            _ => None,
        };
        match hit {
            Some((span, len)) => {
                flush(&mut plain, &mut spans);
                spans.push(span);
                rest = &rest[len..];
            }
            None => {
                plain.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    flush(&mut plain, &mut spans);
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn renders_common_markdown() {
        let t = Theme::monochrome();
        let md = "# Goal\nUse **selective** scan and `cuda`.\n- one\n  - two\n```\nlet x = 1;\n```\n> quoted";
        let lines = render(md, &t);
        assert_eq!(
            text(&lines),
            vec![
                "Goal",
                "Use selective scan and cuda.",
                "• one",
                "  • two",
                "  let x = 1;",
                "│ quoted"
            ]
        );
        assert!(
            lines[1].spans[1]
                .style
                .add_modifier
                .contains(Modifier::BOLD)
        );
        // Unclosed markers stay as written; snake_case is not italic.
        assert_eq!(
            text(&render("2 * 3 and a_b_c", &t)),
            vec!["2 * 3 and a_b_c"]
        );
    }
}
