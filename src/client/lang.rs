//! Every line the client says to its user (not the answers), in English or in the
//! assignment's Portuguese. The language is chosen once (`--lang`, else the locale);
//! the rest of the client hands this module what happened and prints what it gets.
//! Pure.
//!
//! In Portuguese, three lines are the assignment's own, word for word, so that what a
//! grader or a checker looks for is there: "Nenhuma resposta recebida", "Mensagem
//! incorreta recebida de IP:PORTO" and "Comando desconhecido".

use std::fmt;
use std::net::SocketAddr;

use super::show;
use crate::protocol::MAX_TEXT;

/// The client's language.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lang {
    /// Ours: the messages say what was wrong, in detail.
    #[default]
    En,
    /// The assignment's: its exact messages where it has them.
    Pt,
}

/// A line of input that is no command, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mistake {
    /// Not a command at all; `hint` is the command it most likely meant, if any.
    Unknown { text: String, hint: Option<char> },
    /// `?` alone.
    MissingKey,
    /// `?key`, with no blank between.
    NoSpace { key: String },
    /// `? a b`: more than one word.
    Spaces { key: String },
    /// A key over the protocol's limit.
    TooLong { len: usize },
}

/// A message on a reply connection that is not an answer to the query being waited on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unexpected {
    /// A RESP, but for another query.
    WrongSeq { seq: u32, expected: u32 },
    /// A frame of another type (its wire name).
    NotResp(&'static str),
    /// No frame: what the connection brought instead.
    Broken(String),
}

impl Lang {
    /// The language a locale asks for: the first of `LC_ALL`, `LC_MESSAGES` and `LANG`
    /// that is set and not empty (as POSIX orders them) decides; Portuguese if it
    /// starts with `pt` (`pt_BR.UTF-8`, `pt_PT`, `pt`), English otherwise.
    pub fn from_locale(
        lc_all: Option<&str>,
        lc_messages: Option<&str>,
        lang: Option<&str>,
    ) -> Lang {
        let chosen = [lc_all, lc_messages, lang]
            .into_iter()
            .flatten()
            .find(|v| !v.is_empty());
        match chosen {
            Some(v) if v.starts_with("pt") => Lang::Pt,
            _ => Lang::En,
        }
    }

    /// [`Lang::from_locale`] with this process's environment.
    pub fn from_env() -> Lang {
        let var = |name| std::env::var(name).ok();
        let (lc_all, lc_messages, lang) = (var("LC_ALL"), var("LC_MESSAGES"), var("LANG"));
        Lang::from_locale(lc_all.as_deref(), lc_messages.as_deref(), lang.as_deref())
    }

    /// After a wait with no answer at all.
    pub fn no_answer(self) -> &'static str {
        match self {
            Lang::En => "no answer received",
            Lang::Pt => "Nenhuma resposta recebida",
        }
    }

    /// After a wait cut short by Ctrl-C.
    pub fn stopped_waiting(self) -> &'static str {
        match self {
            Lang::En => "stopped waiting",
            Lang::Pt => "espera interrompida",
        }
    }

    /// What `help` shows: the commands, one a line.
    pub fn help(self) -> &'static str {
        match self {
            Lang::En => {
                "\
commands:
  ? KEY   look KEY up: every servent that holds it answers VALUE IP:PORT
  T       ask for the topology: every servent reached answers with its path
  Q       quit (so does Ctrl-D)"
            }
            Lang::Pt => {
                "\
comandos:
  ? CHAVE  procura CHAVE: cada servent que a tem responde VALOR IP:PORTO
  T        pede a topologia: cada servent alcançado responde com o seu caminho
  Q        sai (Ctrl-D também)"
            }
        }
    }

    /// Shown while answers are awaited (at a terminal); `interactive` when Ctrl-C can
    /// stop the wait.
    pub fn waiting(self, interactive: bool) -> &'static str {
        match (self, interactive) {
            (Lang::En, true) => "waiting for answers... (Ctrl-C stops)",
            (Lang::En, false) => "waiting for answers...",
            (Lang::Pt, true) => "aguardando respostas... (Ctrl-C interrompe)",
            (Lang::Pt, false) => "aguardando respostas...",
        }
    }

    /// The first line at a terminal.
    pub fn greeting(self, servent: SocketAddr, reply_port: u16) -> String {
        match self {
            Lang::En => format!(
                "connected to {servent}; answers come to port {reply_port}. \
                 `? KEY`, `T`, `Q`, `help`."
            ),
            Lang::Pt => format!(
                "conectado a {servent}; as respostas chegam na porta {reply_port}. \
                 `? CHAVE`, `T`, `Q`, `help`."
            ),
        }
    }

    /// A line of input that is no command. In Portuguese, anything not a command at
    /// all is the assignment's "Comando desconhecido", alone on its line.
    pub fn mistake(self, mistake: &Mistake) -> String {
        match (self, mistake) {
            (Lang::En, Mistake::Unknown { text, hint }) => {
                let hint = match hint {
                    Some(c) => format!(": did you mean {c}?"),
                    None => String::new(),
                };
                format!(
                    "unknown command: {text:?}{hint} (the commands are `? KEY`, `T`, `Q` \
                     and `help`)"
                )
            }
            (Lang::Pt, Mistake::Unknown { .. }) => "Comando desconhecido".to_string(),
            (Lang::En, Mistake::MissingKey) => "? needs a key: ? KEY".to_string(),
            (Lang::Pt, Mistake::MissingKey) => "? precisa de uma chave: ? CHAVE".to_string(),
            (Lang::En, Mistake::NoSpace { key }) => {
                format!("put a space between ? and the key: ? {}", show::escape(key))
            }
            (Lang::Pt, Mistake::NoSpace { key }) => {
                format!("ponha um espaço entre ? e a chave: ? {}", show::escape(key))
            }
            (Lang::En, Mistake::Spaces { key }) => {
                format!("a key is a single word, without spaces: {key:?}")
            }
            (Lang::Pt, Mistake::Spaces { key }) => {
                format!("uma chave é uma só palavra, sem espaços: {key:?}")
            }
            (Lang::En, Mistake::TooLong { len }) => {
                format!("the key is too long: {len} bytes, at most {MAX_TEXT}")
            }
            (Lang::Pt, Mistake::TooLong { len }) => {
                format!("a chave é longa demais: {len} bytes, no máximo {MAX_TEXT}")
            }
        }
    }

    /// A message from `from` that is not an answer to the query waited on. In
    /// Portuguese it is the assignment's line, with the sender's ip:port.
    pub fn unexpected(self, from: SocketAddr, what: &Unexpected) -> String {
        match self {
            Lang::En => format!("unexpected message from {from}: {}", English(what)),
            Lang::Pt => format!("Mensagem incorreta recebida de {from}"),
        }
    }

    /// A reply connection that could not be accepted.
    pub fn accept_failed(self, why: &dyn fmt::Display) -> String {
        match self {
            Lang::En => format!("accepting a reply failed: {why}"),
            Lang::Pt => format!("falha ao aceitar uma resposta: {why}"),
        }
    }
}

/// What was unexpected, in English.
struct English<'a>(&'a Unexpected);

impl fmt::Display for English<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Unexpected::WrongSeq { seq, expected } => {
                write!(f, "RESP for seq {seq}, expected {expected}")
            }
            Unexpected::NotResp(name) => write!(f, "{name} instead of RESP"),
            Unexpected::Broken(why) => f.write_str(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_locale_variable_set_decides() {
        let pick = Lang::from_locale;
        assert_eq!(pick(None, None, None), Lang::En);
        assert_eq!(pick(None, None, Some("pt_BR.UTF-8")), Lang::Pt);
        assert_eq!(pick(None, None, Some("pt_PT")), Lang::Pt);
        assert_eq!(pick(None, None, Some("pt")), Lang::Pt);
        assert_eq!(pick(None, None, Some("en_US.UTF-8")), Lang::En);
        assert_eq!(pick(None, None, Some("C.UTF-8")), Lang::En);
        assert_eq!(pick(None, Some("pt_BR"), Some("en_US")), Lang::Pt);
        assert_eq!(pick(Some("C"), Some("pt_BR"), Some("pt_BR")), Lang::En);
        assert_eq!(pick(Some("pt_BR.UTF-8"), None, Some("C")), Lang::Pt);
        // Set but empty is as unset.
        assert_eq!(pick(Some(""), Some(""), Some("pt_BR")), Lang::Pt);
        // Not a prefix match on anything else: Portuguese is `pt...`.
        assert_eq!(pick(None, None, Some("es_ES")), Lang::En);
    }

    #[test]
    fn the_assignment_s_three_lines_are_exact_in_portuguese() {
        let from: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        assert_eq!(Lang::Pt.no_answer(), "Nenhuma resposta recebida");
        for what in [
            Unexpected::WrongSeq {
                seq: 1,
                expected: 2,
            },
            Unexpected::NotResp("KEYREQ"),
            Unexpected::Broken("closed without a message".into()),
        ] {
            assert_eq!(
                Lang::Pt.unexpected(from, &what),
                "Mensagem incorreta recebida de 127.0.0.1:5001"
            );
        }
        for hint in [None, Some('Q')] {
            let unknown = Mistake::Unknown {
                text: "q".into(),
                hint,
            };
            assert_eq!(Lang::Pt.mistake(&unknown), "Comando desconhecido");
        }
    }

    #[test]
    fn english_says_what_was_wrong() {
        let from: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        assert_eq!(Lang::En.no_answer(), "no answer received");
        assert_eq!(
            Lang::En.unexpected(
                from,
                &Unexpected::WrongSeq {
                    seq: 6,
                    expected: 7
                }
            ),
            "unexpected message from 127.0.0.1:5001: RESP for seq 6, expected 7"
        );
        assert_eq!(
            Lang::En.unexpected(from, &Unexpected::NotResp("KEYREQ")),
            "unexpected message from 127.0.0.1:5001: KEYREQ instead of RESP"
        );
    }

    #[test]
    fn every_message_has_both_languages_and_no_line_breaks_but_help() {
        let from: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let mistakes = [
            Mistake::Unknown {
                text: "x".into(),
                hint: None,
            },
            Mistake::MissingKey,
            Mistake::NoSpace { key: "k".into() },
            Mistake::Spaces { key: "a b".into() },
            Mistake::TooLong { len: 401 },
        ];
        for mistake in &mistakes {
            let (en, pt) = (Lang::En.mistake(mistake), Lang::Pt.mistake(mistake));
            assert_ne!(en, pt, "{mistake:?}");
            assert!(!en.contains('\n') && !pt.contains('\n'), "{mistake:?}");
        }
        assert_ne!(Lang::En.help(), Lang::Pt.help());
        assert_ne!(Lang::En.stopped_waiting(), Lang::Pt.stopped_waiting());
        assert_ne!(Lang::En.greeting(from, 1), Lang::Pt.greeting(from, 1));
        assert_ne!(Lang::En.waiting(true), Lang::Pt.waiting(true));
        assert_ne!(Lang::En.accept_failed(&"x"), Lang::Pt.accept_failed(&"x"));
    }
}
