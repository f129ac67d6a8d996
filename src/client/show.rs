//! How the client shows what servents send: answers are text from other programs, so
//! what reaches the terminal is escaped unless `--raw` asks for the bytes. Pure.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::net::SocketAddr;

use crate::protocol::Text;

/// `text` with its control characters (C0, DEL, C1) written the way `flood-view`
/// writes keys and values — Rust's own escapes, as in `{:?}`: `\0`, `\r`, `\n`,
/// `\u{1b}` — and `\` as `\\`, so an escape in the output always stands for one byte
/// and a value can neither forge a line nor drive the terminal. Tabs stay tabs: they
/// are harmless, and common in values (services-style files use them to align
/// columns). Everything else is shown as is (invalid UTF-8 as U+FFFD, as everywhere
/// in the project).
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c == '\\' || (c.is_control() && c != '\t') {
                write!(f, "{}", c.escape_debug())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// [`Escaped`] as a `String`.
pub fn escape(text: &str) -> String {
    Escaped(text).to_string()
}

/// Writes one answer as its line, `VALUE IP:PORT`: the value escaped, or with `raw`
/// its bytes as they came.
pub fn answer(out: &mut impl Write, value: &Text, from: SocketAddr, raw: bool) -> io::Result<()> {
    if raw {
        let mut line = Vec::with_capacity(value.len() + 24);
        line.extend_from_slice(value.as_bytes());
        let _ = writeln!(line, " {from}");
        out.write_all(&line)
    } else {
        writeln!(out, "{} {from}", Escaped(&value.to_lossy()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(value: &[u8], raw: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let from: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        answer(&mut out, &Text::new(value).unwrap(), from, raw).unwrap();
        out
    }

    #[test]
    fn plain_values_are_shown_as_they_are() {
        assert_eq!(line(b"v", false), b"v 10.0.0.1:5000\n");
        let utf8 = "café ünïcødé 日本 e\u{301}";
        assert_eq!(escape(utf8), utf8);
        let tabs = "1/ddp\t\t\t# Routing Table Maintenance Protocol";
        assert_eq!(escape(tabs), tabs);
    }

    #[test]
    fn control_characters_are_escaped_and_cannot_forge_a_line() {
        let value = b"a\0b\x1b[31mred\r\nforged 1.2.3.4:5\x0b\x7f";
        let shown = line(value, false);
        assert_eq!(
            String::from_utf8(shown).unwrap(),
            "a\\0b\\u{1b}[31mred\\r\\nforged 1.2.3.4:5\\u{b}\\u{7f} 10.0.0.1:5000\n"
        );
        // C1 controls (CSI as one character) too; a backslash is doubled, so `\n`
        // in the output is always an escaped newline.
        assert_eq!(escape("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(escape("a\\nb"), "a\\\\nb");
        // The same escapes as `{:?}`, which flood-view prints.
        assert_eq!(format!("{:?}", "\0\u{1b}\n"), "\"\\0\\u{1b}\\n\"");
    }

    #[test]
    fn raw_gives_the_bytes_as_they_came() {
        let value = b"a\0b\x1b[31m\nx\xff";
        let mut expected = value.to_vec();
        expected.extend_from_slice(b" 10.0.0.1:5000\n");
        assert_eq!(line(value, true), expected);
        // Escaped, invalid UTF-8 shows as U+FFFD.
        assert_eq!(
            String::from_utf8(line(b"x\xff", false)).unwrap(),
            "x\u{fffd} 10.0.0.1:5000\n"
        );
    }
}
