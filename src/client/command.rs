//! The client's command language (PROTOCOL.md): `? key`, `T`, `Q`. Pure.

use super::show;
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
    /// `help` (or `h`): the list of commands, [`HELP`], is what to show.
    Help,
    /// A blank line: nothing to do.
    Nothing,
    /// Anything else, with what is wrong with it (one line, for the user).
    Invalid(String),
}

/// What `help` shows: the commands, one a line.
pub const HELP: &str = "\
commands:
  ? KEY   look KEY up: every servent that holds it answers VALUE IP:PORT
  T       ask for the topology: every servent reached answers with its path
  Q       quit (so does Ctrl-D)";

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
        "help" | "HELP" | "Help" | "h" | "H" | "-h" | "--help" => return Command::Help,
        _ => {}
    }
    let Some(rest) = trimmed.strip_prefix('?') else {
        // The assignment's commands are upper case; a lower-case one is most likely
        // meant as it, but is not run unasked: `q` must not quit by surprise.
        let hint = match trimmed {
            "q" | "quit" | "exit" => ": did you mean Q?".to_string(),
            "t" => ": did you mean T?".to_string(),
            _ => String::new(),
        };
        return Command::Invalid(format!(
            "unknown command: {trimmed:?}{hint} (the commands are `? KEY`, `T`, `Q` and \
             `help`)"
        ));
    };
    let key = rest.trim_matches(is_blank);
    if key.is_empty() {
        return Command::Invalid("? needs a key: ? KEY".to_string());
    }
    if !rest.starts_with(is_blank) {
        return Command::Invalid(format!(
            "put a space between ? and the key: ? {}",
            show::escape(key)
        ));
    }
    if key.contains(is_blank) {
        return Command::Invalid(format!("a key is a single word, without spaces: {key:?}"));
    }
    match Text::try_from(key) {
        Ok(key) => Command::Lookup(key),
        Err(e) => Command::Invalid(format!(
            "the key is too long: {} bytes, at most {MAX_TEXT}",
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
    fn each_mistake_is_named() {
        let invalid = |line: &str| match parse(line) {
            Command::Invalid(why) => why,
            other => panic!("{line:?} gave {other:?}"),
        };
        assert_eq!(invalid("?"), "? needs a key: ? KEY");
        assert_eq!(invalid("?  \t"), "? needs a key: ? KEY");
        assert_eq!(
            invalid("?rtmp"),
            "put a space between ? and the key: ? rtmp"
        );
        assert!(invalid("? a b").contains("single word"));
        assert!(invalid("hello").starts_with("unknown command: \"hello\""));
        assert_eq!(
            invalid("q"),
            "unknown command: \"q\": did you mean Q? (the commands are `? KEY`, `T`, `Q` \
             and `help`)"
        );
        assert!(invalid(" t ").starts_with("unknown command: \"t\": did you mean T?"));
        assert!(invalid("quit").contains(": did you mean Q?"));
        assert!(!invalid("hello").contains("did you mean"));
        // A control character in a command is shown escaped, never as is.
        assert!(invalid("x\u{1b}[2J").contains("\\u{1b}[2J"));
    }

    #[test]
    fn the_three_commands() {
        assert_eq!(parse("? rtmp\n"), lookup("rtmp"));
        assert_eq!(parse("?\t \tssh\r\n"), lookup("ssh"));
        assert_eq!(parse("T\n"), Command::Topology);
        assert_eq!(parse("Q"), Command::Quit);
        assert_eq!(parse("  T  "), Command::Topology);
        for line in ["help", "h", "H", " help \n"] {
            assert_eq!(parse(line), Command::Help, "{line:?}");
        }
    }

    #[test]
    fn everything_else_is_invalid_or_nothing() {
        assert_eq!(parse("\n"), Command::Nothing);
        assert_eq!(parse(" \t "), Command::Nothing);
        for line in [
            "t", "q", "?rtmp", "?", "?   ", "? a b", "hello", "TQ", "T x",
        ] {
            assert!(
                matches!(parse(line), Command::Invalid(_)),
                "{line:?} should be invalid"
            );
        }
        let long = format!("? {}", "k".repeat(MAX_TEXT + 1));
        assert_eq!(
            parse(&long),
            Command::Invalid("the key is too long: 401 bytes, at most 400".into())
        );
        assert_eq!(
            parse(&format!("? {}", "k".repeat(MAX_TEXT))),
            lookup(&"k".repeat(MAX_TEXT))
        );
    }
}
