//! Terminal setup and teardown. The terminal is restored when `Tui` drops (quit, error)
//! and from a panic hook, so a crash never leaves the shell in raw mode.
use std::cell::Cell;
use std::io::{self, Stdout, Write};
use std::sync::Once;

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub struct Tui {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

fn setup() -> io::Result<()> {
    enable_raw_mode()?;
    execute!(
        io::stdout(),
        EnterAlternateScreen,
        EnableMouseCapture,
        cursor::Hide
    )
}

/// Puts the terminal back the way the shell expects it. Safe to call twice.
pub fn restore() -> io::Result<()> {
    let r = disable_raw_mode();
    execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        cursor::Show
    )?;
    r
}

thread_local! {
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// Says that this thread catches its own panics (a background job): the panic hook then
/// logs them instead of restoring the terminal and printing over the screen the TUI is
/// still drawing.
pub fn contain_panics() {
    CONTAINED.with(|c| c.set(true));
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINED.with(Cell::get) {
                tracing::error!("background job panicked: {info}");
                return;
            }
            let _ = restore();
            previous(info);
        }));
    });
}

impl Tui {
    pub fn enter() -> io::Result<Tui> {
        install_panic_hook();
        setup()?;
        let terminal = match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(t) => t,
            Err(e) => {
                let _ = restore();
                return Err(e);
            }
        };
        Ok(Tui { terminal })
    }

    /// Leaves the alternate screen so another program (the editor) can use the terminal.
    pub fn suspend(&mut self) -> io::Result<()> {
        restore()
    }

    pub fn resume(&mut self) -> io::Result<()> {
        setup()?;
        self.terminal.clear()
    }

    /// Copies text to the system clipboard with the OSC 52 escape.
    pub fn copy(&mut self, text: &str) -> io::Result<()> {
        let mut out = io::stdout();
        write!(out, "\x1b]52;c;{}\x07", base64(text.as_bytes()))?;
        out.flush()
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = restore();
    }
}

pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64(b"gu2023mamba"), "Z3UyMDIzbWFtYmE=");
    }
}
