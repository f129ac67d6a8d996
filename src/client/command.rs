//! The client's command language (PROTOCOL.md): `? key`, `T`, `Q`. Pure.

use crate::protocol::{Text, MAX_TEXT};

/// One line of user input, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `? key`: look the key up in the network.
    Lookup(Text),
    /// `T`: ask for the topology the servent can reach.
    Topology,
    /// `Q`: quit.
    Quit,
    /// A blank line: nothing to do.
    Nothing,
    /// Anything else, with what is wrong with it.
    Unknown(String),
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Parses one line (its line ending, if any, is ignored).
pub fn parse(line: &str) -> Command {
    let line = line.trim_end_matches(['\n', '\r']);
    let trimmed = line.trim_matches(is_blank);
    match trimmed {
        "" => return Command::Nothing,
        "T" => return Command::Topology,
        "Q" => return Command::Quit,
        _ => {}
    }
    let Some(rest) = trimmed.strip_prefix('?') else {
        return Command::Unknown(format!(
            "unknown command: {trimmed:?} (try `? key`, `T` or `Q`)"
        ));
    };
    if !rest.starts_with(is_blank) {
        return Command::Unknown(format!(
            "unknown command: {trimmed:?} (put a space between `?` and the key)"
        ));
    }
    let key = rest.trim_matches(is_blank);
    if key.is_empty() {
        return Command::Unknown("unknown command: `?` needs a key".to_string());
    }
    if key.contains(is_blank) {
        return Command::Unknown(format!(
            "unknown command: {trimmed:?} (a key is a single word)"
        ));
    }
    match Text::try_from(key) {
        Ok(key) => Command::Lookup(key),
        Err(e) => Command::Unknown(format!(
            "unknown command: key is {} bytes, over the limit of {MAX_TEXT}",
            e.len
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(key: &str) -> Command {
        Command::Lookup(Text::try_from(key).unwrap())
    }

    #[test]
    fn the_three_commands() {
        assert_eq!(parse("? rtmp\n"), lookup("rtmp"));
        assert_eq!(parse("?\t \tssh\r\n"), lookup("ssh"));
        assert_eq!(parse("T\n"), Command::Topology);
        assert_eq!(parse("Q"), Command::Quit);
        assert_eq!(parse("  T  "), Command::Topology);
    }

    #[test]
    fn everything_else_is_unknown_or_nothing() {
        assert_eq!(parse("\n"), Command::Nothing);
        assert_eq!(parse(" \t "), Command::Nothing);
        for line in [
            "t", "q", "?rtmp", "?", "?   ", "? a b", "hello", "TQ", "T x",
        ] {
            assert!(
                matches!(parse(line), Command::Unknown(_)),
                "{line:?} should be unknown"
            );
        }
        let long = format!("? {}", "k".repeat(MAX_TEXT + 1));
        assert!(matches!(parse(&long), Command::Unknown(m) if m.contains("401 bytes")));
        assert_eq!(
            parse(&format!("? {}", "k".repeat(MAX_TEXT))),
            lookup(&"k".repeat(MAX_TEXT))
        );
    }
}
