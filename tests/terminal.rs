//! The client at a real terminal (tmux): a prompt, and the session's history, so the
//! up arrow brings the last command back; and `client ... | head -1` typed there.
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
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED the_up_arrow_repeats_the_last_command: tmux is not installed");
        return;
    }
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
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED piped_into_head_...: tmux is not installed");
        return;
    }
    let dir = TempDir::new("terminal-head");
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    let out = dir.0.join("head.out");
    // `client ... | head -1` typed at a terminal; the shell then says how the client
    // ended, and stays for the screen to be read.
    let command = format!(
        "bash -c '{CLIENT} --timeout 0.3 {} | head -1 > {}; \
         echo client ended ${{PIPESTATUS[0]}}; sleep 60'",
        s1.local(),
        out.display()
    );
    let tmux = Tmux::start(&command).expect("tmux starts");
    let prompt = |s: &str| s.lines().last_non_empty().is_some_and(|l| l.trim() == ">");
    tmux.wait("the prompt, on the screen", prompt);
    tmux.keys(&["? k", "Enter"]);
    wait_for("the answer, down the pipe", || {
        std::fs::read_to_string(&out).is_ok_and(|o| o == format!("v {}\n", s1.local()))
    });
    tmux.wait("the next prompt", prompt);
    // head is gone: the next answer has nowhere to go, and the client ends quietly.
    tmux.keys(&["? k", "Enter"]);
    let screen = tmux.wait("the client's end", |s| s.contains("client ended"));
    assert!(screen.contains("client ended 0"), "{screen}");
    assert!(!screen.contains("error"), "{screen}");
    assert!(!screen.contains(&format!("v {}", s1.local())), "{screen}");
}

trait LastNonEmpty<'a> {
    fn last_non_empty(self) -> Option<&'a str>;
}

impl<'a, I: DoubleEndedIterator<Item = &'a str>> LastNonEmpty<'a> for I {
    fn last_non_empty(mut self) -> Option<&'a str> {
        self.rfind(|l| !l.trim().is_empty())
    }
}
