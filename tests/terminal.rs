//! The client at a real terminal (tmux): a prompt, and the session's history, so the
//! up arrow brings the last command back; pasted and typed-ahead commands all run, in
//! order; Ctrl-C ends a wait; the waiting indicator never mixes with answers; and
//! `client ... | head -1` or `| tee` typed there keep the pipe clean.
//! Skipped, saying so, where tmux is missing (`.ci/run` installs it).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A private tmux server, killed with everything in it when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Option<Tmux> {
        // One server per test: tests run in parallel, and each kills its own.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let socket = format!(
            "tp3kv-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let started = Command::new("tmux")
            // The client's notes in English, whatever the machine's locale.
            .env("LC_ALL", ENGLISH)
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "30",
                command,
            ])
            .status()
            .ok()?;
        assert!(started.success(), "tmux new-session failed");
        Some(Tmux { socket })
    }

    /// Runs `command` in a shell at the terminal; after it, the shell says how it ended
    /// (`client ended STATUS`, the first command's status in a pipeline) and stays, so
    /// the screen can be read.
    fn shell(dir: &TempDir, command: &str) -> Tmux {
        let script = dir.file(
            "run.sh",
            // `trap : INT`: the script's bash, in the same process group as the client
            // (no job control), gets the terminal's Ctrl-C too. Without a trap it exits
            // once a pipeline it waits for ends with a process killed by SIGINT (`tee`),
            // taking the pane with it; an interactive shell would go on, as this does.
            &format!("trap : INT\n{command}\necho client ended ${{PIPESTATUS[0]}}\nsleep 600\n"),
        );
        // `exec`: the pane's process is this bash, whatever shell tmux starts it with
        // (`$SHELL`, or `/bin/sh` when unset), so the client is one of its children.
        Tmux::start(&format!("exec bash {}", script.display())).expect("tmux starts")
    }

    /// Pastes `text` as a terminal does, within bracketed-paste markers if `bracketed`
    /// (and the program asked for them, as the line editor does).
    fn paste(&self, text: &str, bracketed: bool) {
        self.tmux(&["set-buffer", "-b", "paste", text]);
        let mut args = vec!["paste-buffer", "-d", "-b", "paste", "-t", "0"];
        if bracketed {
            args.push("-p");
        }
        self.tmux(&args);
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "0"])
    }

    /// Waits (30 s at most) until the screen satisfies `done`.
    fn wait(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "{what}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

#[test]
fn the_up_arrow_repeats_the_last_command() {
    let Some(_) = tmux_or_skip("the_up_arrow_repeats_the_last_command") else {
        return;
    };
    let dir = TempDir::new("terminal");
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    let command = format!("{CLIENT} --timeout 0.3 {}", s1.local());
    let tmux = Tmux::start(&command).expect("tmux starts");
    let answer = format!("v {}", s1.local());
    // (capture-pane drops trailing spaces: the prompt "> " shows as ">".)
    tmux.wait("the prompt", |s| {
        s.lines().last_non_empty().is_some_and(|l| l.trim() == ">")
    });
    tmux.keys(&["? k", "Enter"]);
    tmux.wait("the first answer", |s| s.matches(&answer).count() == 1);
    tmux.wait("the next prompt", |s| {
        s.lines().last_non_empty().is_some_and(|l| l.trim() == ">")
    });
    // Up brings back `? k`; Enter sends it again.
    tmux.keys(&["Up"]);
    tmux.wait("the command brought back", |s| {
        s.lines()
            .last_non_empty()
            .is_some_and(|l| l.trim() == "> ? k")
    });
    tmux.keys(&["Enter"]);
    let screen = tmux.wait("the second answer", |s| s.matches(&answer).count() == 2);
    assert_eq!(screen.matches("> ? k").count(), 2, "{screen}");
    tmux.keys(&["Q", "Enter"]);
}

#[test]
fn piped_into_head_the_answers_go_down_the_pipe_and_the_prompt_stays_on_the_screen() {
    let Some(_) = tmux_or_skip("piped_into_head_...") else {
        return;
    };
    let dir = TempDir::new("terminal-head");
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    let out = dir.0.join("head.out");
    // `client ... | head -1` typed at a terminal; the shell then says how the client
    // ended, and stays for the screen to be read.
    let tmux = Tmux::shell(
        &dir,
        &format!(
            "{CLIENT} --timeout 0.3 {} | head -1 > {}",
            s1.local(),
            out.display()
        ),
    );
    let prompt = |s: &str| s.lines().last_non_empty().is_some_and(|l| l.trim() == ">");
    tmux.wait("the prompt, on the screen", prompt);
    tmux.keys(&["? k", "Enter"]);
    wait_for("the answer, down the pipe", || {
        std::fs::read_to_string(&out).is_ok_and(|o| o == format!("v {}\n", s1.local()))
    });
    // head is gone: the answers of any further command would have nowhere to go, and
    // the client ends quietly once the wait is over.
    let screen = tmux.wait("the client's end", |s| s.contains("client ended"));
    assert!(screen.contains("client ended 0"), "{screen}");
    assert!(!screen.contains("error"), "{screen}");
    assert!(!screen.contains(&format!("v {}", s1.local())), "{screen}");
}

/// Whether tmux is there; if not, says the test is skipped.
fn tmux_or_skip(test: &str) -> Option<()> {
    if Command::new("tmux").arg("-V").output().is_err() {
        skipped(format_args!("{test}: tmux is not installed"));
        return None;
    }
    Some(())
}

/// The prompt, alone on the last line: the client waits for a command. (capture-pane
/// drops trailing spaces: the prompt "> " shows as ">".)
fn at_prompt(screen: &str) -> bool {
    screen
        .lines()
        .last_non_empty()
        .is_some_and(|l| l.trim() == ">")
}

/// The screen's non-empty lines after the client's greeting, trimmed.
fn session(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .skip_while(|l| !l.starts_with("connected to "))
        .skip(1)
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect()
}

/// How many lines of the screen are answers from `from`.
fn answers_from(screen: &str, from: &str) -> usize {
    let suffix = format!(" {from}");
    screen
        .lines()
        .filter(|l| l.trim_end().ends_with(&suffix))
        .count()
}

const STORE: &str = "a va\nb vb\nc vc\n";

/// Four commands pasted in one go, with or without bracketed paste: each runs, in
/// order, and each is an entry of the history.
fn four_pasted_commands(bracketed: bool) {
    let dir = TempDir::new("terminal-paste");
    let s1 = servent(&dir, "s1", STORE, &[]);
    let from = s1.local();
    let tmux =
        Tmux::start(&format!("{CLIENT} --timeout {CLIENT_TIMEOUT} {from}")).expect("tmux starts");
    tmux.wait("the prompt", at_prompt);
    tmux.paste("? a\n? b\n? c\nT\n", bracketed);
    let commands = ["> ? a", "? b", "? c", "T"];
    if bracketed {
        // The paste lands in the line as one edit, and waits for Enter.
        let screen = tmux.wait("the pasted block", |s| session(s).starts_with(&commands));
        assert!(!screen.contains("va "), "ran before Enter:\n{screen}");
        tmux.keys(&["Enter"]);
    }
    let done = |s: &str| at_prompt(s) && answers_from(s, &from) == 4;
    let screen = tmux.wait("four answers, then the prompt", done);
    let lines = session(&screen);
    let answers = [
        format!("va {from}"),
        format!("vb {from}"),
        format!("vc {from}"),
    ];
    if bracketed {
        assert_eq!(lines[..4], commands, "{screen}");
        assert_eq!(lines[4..7], answers, "{screen}");
        assert!(lines[7].ends_with(&format!(" {from}")), "{screen}");
        assert_eq!(lines.len(), 9, "{screen}");
    } else {
        // Each command shows at its own prompt, its answers below it.
        let expected = [
            "> ? a",
            &answers[0],
            "> ? b",
            &answers[1],
            "> ? c",
            &answers[2],
            "> T",
        ];
        assert_eq!(lines[..7], expected, "{screen}");
        assert!(lines[7].ends_with(&format!(" {from}")), "{screen}");
        assert_eq!(lines.len(), 9, "{screen}");
    }
    assert!(!screen.contains("waiting for answers"), "{screen}");
    // Each command is in the history, the last one first.
    tmux.keys(&["Up"]);
    tmux.wait("T, brought back", |s| {
        s.lines()
            .last_non_empty()
            .is_some_and(|l| l.trim() == "> T")
    });
    tmux.keys(&["Up"]);
    tmux.wait("? c, brought back", |s| {
        s.lines()
            .last_non_empty()
            .is_some_and(|l| l.trim() == "> ? c")
    });
    tmux.keys(&["C-c", "Q", "Enter"]);
}

#[test]
fn four_commands_pasted_all_run_in_order() {
    let Some(_) = tmux_or_skip("four_commands_pasted_all_run_in_order") else {
        return;
    };
    four_pasted_commands(false);
}

#[test]
fn four_commands_in_a_bracketed_paste_all_run_in_order() {
    let Some(_) = tmux_or_skip("four_commands_in_a_bracketed_paste_all_run_in_order") else {
        return;
    };
    four_pasted_commands(true);
}

#[test]
fn a_command_typed_during_a_wait_runs_after_it_and_is_not_echoed_raw() {
    let Some(_) = tmux_or_skip("a_command_typed_during_a_wait_...") else {
        return;
    };
    let dir = TempDir::new("terminal-typeahead");
    let s1 = servent(&dir, "s1", STORE, &[]);
    let from = s1.local();
    // A long window: the second command is surely typed while the first one's is open.
    let tmux = Tmux::start(&format!("{CLIENT} --timeout 8 {from}")).expect("tmux starts");
    tmux.wait("the prompt", at_prompt);
    tmux.keys(&["? a", "Enter"]);
    tmux.wait("the answer, and the indicator below it", |s| {
        let lines = session(s);
        lines.len() == 3
            && lines[1] == format!("va {from}")
            && lines[2].contains("waiting for answers")
    });
    tmux.keys(&["? b", "Enter"]);
    let during = tmux.screen();
    assert!(
        during.contains("waiting for answers"),
        "typed after the wait (machine too slow?):\n{during}"
    );
    let screen = tmux.wait("the second command's answer, then the prompt", |s| {
        at_prompt(s) && s.contains(&format!("vb {from}"))
    });
    // Not echoed while waiting (it would show twice), run at its own prompt after the
    // first command's window, and the indicator gone.
    let answers = (format!("va {from}"), format!("vb {from}"));
    assert_eq!(
        session(&screen),
        ["> ? a", &answers.0, "> ? b", &answers.1, ">"],
        "{screen}"
    );
    tmux.keys(&["Q", "Enter"]);
}

#[test]
fn ctrl_c_ends_a_wait_and_the_client_goes_on() {
    let Some(_) = tmux_or_skip("ctrl_c_ends_a_wait_and_the_client_goes_on") else {
        return;
    };
    let dir = TempDir::new("terminal-ctrl-c");
    let s1 = servent(&dir, "s1", STORE, &[]);
    // A window far longer than the test's patience: only Ctrl-C can end it in time.
    let tmux = Tmux::shell(&dir, &format!("{CLIENT} --timeout 600 {}", s1.local()));
    tmux.wait("the prompt", at_prompt);
    tmux.keys(&["? nosuchkey", "Enter"]);
    tmux.wait("the indicator", |s| s.contains("waiting for answers"));
    tmux.keys(&["C-c"]);
    let screen = tmux.wait("the prompt, back", |s| {
        at_prompt(s) && !s.contains("waiting for answers")
    });
    assert_eq!(
        session(&screen),
        ["> ? nosuchkey", "stopped waiting", ">"],
        "{screen}"
    );
    // At the prompt, Ctrl-C drops the line being typed; Q then ends the client, 0.
    tmux.keys(&["? a", "C-c"]);
    tmux.wait("the line dropped", |s| at_prompt(s) && s.contains("> ? a"));
    tmux.keys(&["Q", "Enter"]);
    let screen = tmux.wait("the client's end", |s| s.contains("client ended"));
    assert!(screen.contains("client ended 0"), "{screen}");
    assert!(!screen.contains("va "), "the dropped line ran:\n{screen}");
}

#[test]
fn piped_into_tee_the_file_holds_only_the_answers() {
    let Some(_) = tmux_or_skip("piped_into_tee_the_file_holds_only_the_answers") else {
        return;
    };
    let dir = TempDir::new("terminal-tee");
    let s1 = servent(&dir, "s1", STORE, &[]);
    let from = s1.local();
    let out = dir.0.join("tee.out");
    let tmux = Tmux::shell(
        &dir,
        &format!(
            "{CLIENT} --timeout {CLIENT_TIMEOUT} {from} | tee {}",
            out.display()
        ),
    );
    tmux.wait("the prompt", at_prompt);
    // An answer, a note (stderr), a bad command, the topology; line editing on the way.
    tmux.keys(&["? a", "Enter"]);
    tmux.wait("a's answer", |s| {
        at_prompt(s) && s.contains(&format!("va {from}"))
    });
    tmux.keys(&["? nosuchkey", "Enter"]);
    tmux.wait("no answer", |s| {
        at_prompt(s) && s.contains("no answer received")
    });
    tmux.keys(&["?", "Enter"]);
    tmux.wait("the note", |s| at_prompt(s) && s.contains("? needs a key"));
    tmux.keys(&["X", "BSpace", "T", "Left", "Right", "Enter"]);
    tmux.wait("the topology", |s| {
        at_prompt(s) && answers_from(s, &from) == 2
    });
    tmux.keys(&["Q", "Enter"]);
    let screen = tmux.wait("the client's end", |s| s.contains("client ended"));
    assert!(screen.contains("client ended 0"), "{screen}");
    // The answers (shown by tee) never share a line with the indicator.
    assert!(!screen.contains("waiting"), "{screen}");
    let file = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = file.lines().collect();
    assert_eq!(lines.len(), 2, "{file:?}");
    assert_eq!(lines[0], format!("va {from}"), "{file:?}");
    assert!(lines[1].ends_with(&format!(" {from}")), "{file:?}");
    assert!(
        !file.contains(['\x1b', '\r', '>']),
        "terminal codes or the prompt in the pipe: {file:?}"
    );
}

#[test]
fn ctrl_c_in_a_pipeline_ends_the_client_with_the_rest_of_it() {
    let Some(_) = tmux_or_skip("ctrl_c_in_a_pipeline_ends_the_client_with_the_rest_of_it") else {
        return;
    };
    let dir = TempDir::new("terminal-tee-ctrl-c");
    let s1 = servent(&dir, "s1", STORE, &[]);
    let out = dir.0.join("tee.out");
    let tmux = Tmux::shell(
        &dir,
        &format!(
            "{CLIENT} --timeout 600 {} | tee {}",
            s1.local(),
            out.display()
        ),
    );
    tmux.wait("the prompt", at_prompt);
    tmux.keys(&["? nosuchkey", "Enter"]);
    tmux.wait("the indicator", |s| s.contains("waiting for answers"));
    // The terminal sends SIGINT to the whole pipeline: tee ends, and with nobody left
    // to read its answers, so does the client, quietly, instead of prompting again.
    tmux.keys(&["C-c"]);
    let screen = tmux.wait("the client's end", |s| s.contains("client ended"));
    assert!(screen.contains("client ended 0"), "{screen}");
    assert!(!screen.contains("error"), "{screen}");
    assert!(!screen.contains("waiting for answers"), "{screen}");
}

/// The terminal's modes (`stty -g`) before and after the client, which ends as `end`
/// makes it; returns the screen, its last line saying how the client ended.
fn modes_around_the_client(end: impl FnOnce(&Tmux, &TempDir)) -> String {
    let dir = TempDir::new("terminal-modes");
    let s1 = servent(&dir, "s1", STORE, &[]);
    let (before, after) = (dir.0.join("before"), dir.0.join("after"));
    let tmux = Tmux::shell(
        &dir,
        &format!(
            "stty -g > {}; {CLIENT} --timeout 600 {}; status=$?; stty -g > {}; (exit $status)",
            before.display(),
            s1.local(),
            after.display()
        ),
    );
    tmux.wait("the prompt", at_prompt);
    tmux.keys(&["? a", "Enter"]);
    tmux.wait("the indicator", |s| s.contains("waiting for answers"));
    end(&tmux, &dir);
    let screen = tmux.wait("the client's end", |s| s.contains("client ended"));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(&before), read(&after), "{screen}");
    screen
}

#[test]
fn the_terminal_is_given_back_as_it_was() {
    let Some(_) = tmux_or_skip("the_terminal_is_given_back_as_it_was") else {
        return;
    };
    // Ctrl-C, then Q.
    let screen = modes_around_the_client(|tmux, _| {
        tmux.keys(&["C-c"]);
        tmux.wait("the prompt, back", at_prompt);
        tmux.keys(&["Q", "Enter"]);
    });
    assert!(screen.contains("client ended 0"), "{screen}");
    // SIGTERM in the middle of a wait: the terminal's modes come back, and the
    // indicator goes, before the client dies of it.
    let screen = modes_around_the_client(|tmux, _| {
        let shell = tmux.tmux(&["display-message", "-p", "-t", "0", "#{pane_pid}"]);
        let shell = shell.trim();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .expect("the shell's children");
        let client: i32 = children
            .split_whitespace()
            .find(|child| {
                std::fs::read(format!("/proc/{child}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.starts_with(CLIENT.as_bytes()))
            })
            .unwrap_or_else(|| panic!("no client among the shell's children {children:?}"))
            .parse()
            .unwrap();
        // SAFETY: kill only sends a signal, to the client this test started.
        assert_eq!(unsafe { libc::kill(client, libc::SIGTERM) }, 0);
    });
    assert!(screen.contains("client ended 143"), "{screen}");
    assert!(!screen.contains("waiting for answers"), "{screen}");
}

trait LastNonEmpty<'a> {
    fn last_non_empty(self) -> Option<&'a str>;
}

impl<'a, I: DoubleEndedIterator<Item = &'a str>> LastNonEmpty<'a> for I {
    fn last_non_empty(mut self) -> Option<&'a str> {
        self.rfind(|l| !l.trim().is_empty())
    }
}
