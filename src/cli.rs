//! What the three binaries' command lines share: one convention for exit statuses and
//! one-line errors (`client: error: <what>`), which users, scripts and graders can rely
//! on whichever tool they run.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;

/// Exit status of a runtime error: the command line was fine, the world was not.
pub const RUNTIME_ERROR: i32 = 1;
/// Exit status of a usage error: something wrong in the command line.
pub const USAGE_ERROR: i32 = 2;

/// The command line, or exit: `--help` and `--version` print and exit 0; anything
/// wrong is one line, `BIN: error: <what>`, and exit 2 (clap's own report spans
/// several lines, with the usage and a hint, which `--help` gives anyway).
pub fn parse<A: Parser>(bin: &str) -> A {
    match A::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        // No subcommand given: clap's report is the whole help.
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let what = format!("expected a command; `{bin} --help` lists them");
            fail(bin, USAGE_ERROR, &what)
        }
        Err(e) => fail(bin, USAGE_ERROR, &one_line(&e.render().to_string())),
    }
}

/// `BIN: error: <what>` on stderr (if it is still there), and exit with `status`.
pub fn fail(bin: &str, status: i32, what: &str) -> ! {
    let _ = writeln!(io::stderr(), "{bin}: error: {what}");
    std::process::exit(status);
}

/// A port number from the command line, from `min` (0 or 1) to 65535, or one line
/// saying what is wrong, in the one wording every port has:
/// `bad port 99999: expected a number from 1 to 65535` (`what` names the port).
pub fn parse_port(text: &str, what: &str, min: u16) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port >= min => return Ok(port),
        _ => {}
    }
    let range = match min {
        0 => "from 0 to 65535 (0: any free port)".to_string(),
        min => format!("from {min} to 65535"),
    };
    let shown = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.to_string()
    } else {
        format!("{text:?}")
    };
    Err(format!("bad {what} {shown}: expected a number {range}"))
}

/// A positive, finite number of seconds, as a flag takes it (`0.5`, `60`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub Duration);

impl FromStr for Seconds {
    type Err = String;

    fn from_str(text: &str) -> Result<Seconds, String> {
        let bad = || "expected a positive number of seconds, such as 2 or 0.5".to_string();
        let value: f64 = text.trim().parse().map_err(|_| bad())?;
        if !value.is_finite() || value <= 0.0 {
            return Err(bad());
        }
        Duration::try_from_secs_f64(value)
            .map(Seconds)
            .map_err(|_| format!("{value} seconds is too long"))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// A clap error report on one line: its message and any details or tips, without the
/// usage and the pointer to `--help`.
fn one_line(report: &str) -> String {
    let mut line = String::new();
    for part in report.lines().map(str::trim) {
        if part.is_empty() || part.starts_with("Usage:") || part.starts_with("For more") {
            continue;
        }
        let part = part.strip_prefix("error: ").unwrap_or(part);
        if !line.is_empty() {
            line.push_str(if part.starts_with("tip:") { "; " } else { " " });
        }
        line.push_str(part);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::{one_line, parse_port, Seconds};
    use std::time::Duration;

    #[test]
    fn seconds_are_positive_and_finite() {
        assert_eq!("0.5".parse(), Ok(Seconds(Duration::from_millis(500))));
        assert_eq!(" 60 ".parse(), Ok(Seconds(Duration::from_secs(60))));
        for bad in ["0", "-1", "x", "inf", "NaN", ""] {
            let e = bad.parse::<Seconds>().unwrap_err();
            assert!(e.contains("positive number of seconds"), "{bad}: {e}");
        }
        assert_eq!(Seconds(Duration::from_millis(1500)).to_string(), "1.5");
    }

    #[test]
    fn ports_have_one_wording() {
        assert_eq!(parse_port("5001", "port", 1), Ok(5001));
        assert_eq!(parse_port("0", "local port", 0), Ok(0));
        assert_eq!(
            parse_port("99999", "port", 1).unwrap_err(),
            "bad port 99999: expected a number from 1 to 65535"
        );
        assert_eq!(
            parse_port("0", "port", 1).unwrap_err(),
            "bad port 0: expected a number from 1 to 65535"
        );
        assert_eq!(
            parse_port("x", "local port", 0).unwrap_err(),
            "bad local port \"x\": expected a number from 0 to 65535 (0: any free port)"
        );
        assert!(parse_port("", "port", 1)
            .unwrap_err()
            .starts_with("bad port \"\": "));
    }

    #[test]
    fn a_clap_report_becomes_one_line() {
        let report = "error: unexpected argument '--bogus' found\n\n  \
                      tip: to pass '--bogus' as a value, use '-- --bogus'\n\n\
                      Usage: client [OPTIONS] [LOCAL_PORT] <IP:PORT>\n\n\
                      For more information, try '--help'.\n";
        assert_eq!(
            one_line(report),
            "unexpected argument '--bogus' found; tip: to pass '--bogus' as a value, use \
             '-- --bogus'"
        );
    }
}
