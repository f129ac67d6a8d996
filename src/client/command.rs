//! The client's command language (PROTOCOL.md): `? key`, `T`, `Q`. Pure.

pub use super::lang::Mistake;
use crate::protocol::Text;

/// One line of user input, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `? key`: look the key up in the network.
    Lookup(Text),
    /// `T`: ask for the topology the servent can reach.
    Topology,
    /// `Q`: quit.
    Quit,
    /// `help` (or `h`): the list of commands ([`super::lang::Lang::help`]) is what
    /// to show.
    Help,
    /// A blank line: nothing to do.
    Nothing,
    /// Anything else, with what is wrong with it (worded by [`super::lang::Lang`]).
    Invalid(Mistake),
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
        "help" | "HELP" | "Help" | "h" | "H" | "-h" | "--help" => return Command::Help,
        _ => {}
    }
    let Some(rest) = trimmed.strip_prefix('?') else {
        // The assignment's commands are upper case; a lower-case one is most likely
        // meant as it, but is not run unasked: `q` must not quit by surprise.
        let hint = match trimmed {
            "q" | "quit" | "exit" => Some('Q'),
            "t" => Some('T'),
            _ => None,
        };
        return Command::Invalid(Mistake::Unknown {
            text: trimmed.to_string(),
            hint,
        });
    };
    let key = rest.trim_matches(is_blank);
    if key.is_empty() {
        return Command::Invalid(Mistake::MissingKey);
    }
    if !rest.starts_with(is_blank) {
        return Command::Invalid(Mistake::NoSpace {
            key: key.to_string(),
        });
    }
    if key.contains(is_blank) {
        return Command::Invalid(Mistake::Spaces {
            key: key.to_string(),
        });
    }
    match Text::try_from(key) {
        Ok(key) => Command::Lookup(key),
        Err(e) => Command::Invalid(Mistake::TooLong { len: e.len }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::lang::Lang;
    use super::*;
    use crate::protocol::MAX_TEXT;

    fn lookup(key: &str) -> Command {
        Command::Lookup(Text::try_from(key).unwrap())
    }

    #[test]
    fn each_mistake_is_named() {
        let invalid = |line: &str| match parse(line) {
            Command::Invalid(why) => Lang::En.mistake(&why),
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
            Command::Invalid(Mistake::TooLong { len: 401 })
        );
        assert_eq!(
            parse(&format!("? {}", "k".repeat(MAX_TEXT))),
            lookup(&"k".repeat(MAX_TEXT))
        );
    }
}
