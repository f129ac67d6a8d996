//! Our binaries in the assignment's own terms: `servent --ttl-rule 2019` (decrement,
//! then test: one hop less reach than the seed's rule, docs/PROTOCOL.md section 7) and
//! `client --lang pt` or a Portuguese locale (the assignment's exact messages).

mod common;
mod sim;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use sim::{addr_of, flood_ttl, Lcg, Network, NodeId};
use tp3kv::protocol::{self, Frame, Text};
use tp3kv::servent::{Config, Servent, TtlRule};
use tp3kv::store::Store;

const RULES: [TtlRule; 2] = [TtlRule::Seed, TtlRule::Assignment2019];

/// A network of `count` servents following `rule`, node i holding `k{i} v{i}` and
/// `all a{i}` plus `extra` for every node.
fn network(count: usize, rule: TtlRule, extra: &str) -> Network {
    let stores: Vec<String> = (0..count)
        .map(|i| format!("k{i} v{i}\nall a{i}\n{extra}"))
        .collect();
    let stores: Vec<&str> = stores.iter().map(String::as_str).collect();
    let mut net = Network::new(&stores);
    for (i, store) in stores.iter().enumerate() {
        let config = Config {
            ttl_rule: rule,
            ..Config::default()
        };
        net.nodes[i] = Servent::new(
            Store::parse(store.as_bytes()).unwrap(),
            addr_of(i).port(),
            config,
        );
    }
    net
}

fn line_of_6(rule: TtlRule) -> Network {
    let mut net = network(6, rule, "");
    net.chain(&[0, 1, 2, 3, 4, 5]);
    net
}

/// One row of docs/PROTOCOL.md section 7's table: the TTL a servent of the line
/// receives (None: never reached; s1 gets the request) and the TTL it forwards with
/// (None: it does not).
type Row = (Option<u16>, Option<u16>);

fn expected_line(rule: TtlRule) -> [Row; 6] {
    match rule {
        TtlRule::Seed => [
            (None, Some(3)),
            (Some(3), Some(2)),
            (Some(2), Some(1)),
            (Some(1), Some(0)),
            (Some(0), None),
            (None, None),
        ],
        TtlRule::Assignment2019 => [
            (None, Some(3)),
            (Some(3), Some(2)),
            (Some(2), Some(1)),
            (Some(1), None),
            (None, None),
            (None, None),
        ],
    }
}

#[test]
fn the_line_of_6_follows_the_protocol_table_under_both_rules() {
    for rule in RULES {
        let mut net = line_of_6(rule);
        let client = net.attach_client(0, 7000);
        net.lookup(client, 1, "all");
        for (node, (received, forwarded)) in expected_line(rule).into_iter().enumerate() {
            let got: Vec<u16> = net
                .received_by(node, 1)
                .iter()
                .filter_map(|d| flood_ttl(&d.frame))
                .collect();
            assert_eq!(got, Vec::from_iter(received), "{rule:?} s{}", node + 1);
            let sent: Vec<u16> = net
                .sent_by(node, 1)
                .iter()
                .filter_map(|d| flood_ttl(&d.frame))
                .collect();
            // On a line, one copy on (s6 has no one to send it to).
            let forwarded = forwarded.filter(|_| node < 5);
            assert_eq!(sent, Vec::from_iter(forwarded), "{rule:?} s{}", node + 1);
        }
        let last = match rule {
            TtlRule::Seed => 4,
            TtlRule::Assignment2019 => 3,
        };
        assert_eq!(net.answerers(1), (0..=last).collect::<Vec<_>>(), "{rule:?}");
    }
}

#[test]
fn under_the_2019_rule_s4_is_the_last_to_answer_a_key_or_a_topology_query() {
    let mut net = line_of_6(TtlRule::Assignment2019);
    let client = net.attach_client(0, 7000);
    net.lookup(client, 1, "k3");
    assert_eq!(net.answerers(1), vec![3]);
    net.lookup(client, 2, "k4");
    assert!(net.answerers(2).is_empty(), "s5 must not be reached");
    net.topology(client, 3);
    let mut answers: Vec<(NodeId, String)> = net
        .answers
        .iter()
        .filter(|a| a.seq == 3)
        .map(|a| (a.from, a.value.clone()))
        .collect();
    answers.sort();
    let names: Vec<String> = (0..4).map(|i| addr_of(i).to_string()).collect();
    let expected: Vec<(NodeId, String)> = (0..4).map(|i| (i, names[..=i].join(" "))).collect();
    assert_eq!(answers, expected);
}

#[test]
fn a_ttl_above_3_from_a_neighbour_is_spent_under_both_rules() {
    for rule in RULES {
        let mut net = line_of_6(rule);
        for ttl in [4, 255, 65535] {
            let seq = u32::from(ttl);
            let frame = Frame::KeyFlood(protocol::Flood {
                ttl,
                seq,
                client: "10.9.9.9:7000".parse().unwrap(),
                text: Text::new(b"all").unwrap(),
            });
            net.inject(0, 1, frame);
            assert_eq!(net.answerers(seq), vec![1], "{rule:?} TTL {ttl}");
            assert!(net.sent_by(1, seq).is_empty(), "{rule:?} TTL {ttl}");
        }
    }
}

/// A connected random graph of 5 to 34 servents following `rule`, all holding `all`.
fn random_graph(seed: u64, rule: TtlRule) -> Network {
    let mut rng = Lcg(seed);
    let count = 5 + rng.below(30);
    let mut net = network(count, rule, "");
    let mut edges = HashSet::new();
    for node in 1..count {
        edges.insert((rng.below(node), node));
    }
    let extra = rng.below(2 * count);
    while edges.len() < count - 1 + extra {
        let (a, b) = (rng.below(count), rng.below(count));
        if a != b && !edges.contains(&(b, a)) {
            edges.insert((a, b));
        }
    }
    let mut edges: Vec<_> = edges.into_iter().collect();
    edges.sort_unstable();
    for (a, b) in edges {
        net.link(a, b);
    }
    net
}

#[test]
fn on_random_graphs_the_reach_is_4_hops_for_the_seed_and_3_for_2019() {
    for rule in RULES {
        let hops = match rule {
            TtlRule::Seed => 4,
            TtlRule::Assignment2019 => 3,
        };
        for seed in 0..40 {
            let mut net = random_graph(seed, rule);
            let start = Lcg(seed ^ 0x5eed).below(net.nodes.len());
            let client = net.attach_client(start, 7000);
            net.lookup(client, 1, "all");
            // Delivered in send order, the first copy to arrive came the shortest way.
            let within: Vec<NodeId> = net
                .distances(start)
                .iter()
                .enumerate()
                .filter(|(_, d)| d.is_some_and(|d| d <= hops))
                .map(|(n, _)| n)
                .collect();
            assert_eq!(net.answerers(1), within, "{rule:?} seed {seed}");
        }
    }
}

#[test]
fn real_servents_with_ttl_rule_2019_stop_at_s4() {
    let _heavy = heavy();
    let dir = TempDir::new("ttl-2019");
    // Started from the far end, so each names an already-listening neighbour.
    let mut nodes: Vec<Node> = Vec::new();
    for i in (0..6).rev() {
        let store = format!("k{} v{}\n", i + 1, i + 1);
        let neighbours: Vec<&Node> = nodes.last().into_iter().collect();
        let node = servent_with(
            &dir,
            &format!("s{}", i + 1),
            &store,
            &neighbours,
            &["--ttl-rule", "2019"],
        );
        nodes.push(node);
    }
    nodes.reverse();
    for (i, node) in nodes.iter().enumerate() {
        wait_links(node, if i == 0 || i == 5 { 1 } else { 2 });
    }
    let run = client(&nodes[0], "? k4\n? k5\n");
    let lines = run.lines();
    assert_eq!(lines, [format!("v4 {}", nodes[3].local())], "{run:?}");
    assert!(run.stderr.contains("no answer received"), "{run:?}");
    assert!(
        nodes[0].log().contains("TTL rule 2019"),
        "{}",
        nodes[0].log()
    );
    // s4 received TTL 1 and, decrementing first, kept it; s5 never heard of it.
    wait_for("s4 to log the spent TTL", || {
        nodes[3]
            .log()
            .contains("decremented to 0 (2019 TTL rule), not forwarded")
    });
    assert!(!nodes[4].log().contains("KEYFLOOD"), "{}", nodes[4].log());
}

/// A servent of another implementation, on a raw socket: accepts one client, reads its
/// ID and KEYREQ, and sends to its reply port, each on a connection of its own, a RESP
/// with another seq and then a TOPOREQ, never the answer. Returns its address, and a
/// thread giving those two connections' source addresses.
fn misleading_servent() -> (String, std::thread::JoinHandle<(SocketAddr, SocketAddr)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sender = std::thread::spawn(move || {
        let (mut link, port, seq) = accept_client_request(&listener);
        let send = |frame: Frame| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&frame.to_bytes()).unwrap();
            s.local_addr().unwrap()
        };
        let wrong_seq = send(Frame::Resp {
            seq: seq.wrapping_add(1),
            value: Text::new(b"stale").unwrap(),
        });
        let wrong_type = send(Frame::TopoReq { seq });
        // Keep the link open until the client is done with it.
        while link.read(&mut [0u8; 64]).is_ok_and(|n| n > 0) {}
        (wrong_seq, wrong_type)
    });
    (addr, sender)
}

/// Our client with no locale but `env`, and `args`, asking `servent` with `input`.
fn client_in(env: &[(&str, &str)], args: &[&str], servent: &str, input: &str) -> ClientRun {
    let mut command = Command::new(CLIENT);
    for var in ["LC_ALL", "LC_MESSAGES", "LANG"] {
        command.env_remove(var);
    }
    command
        .envs(env.iter().copied())
        // Long enough that the misleading messages come within the wait, however
        // busy the machine.
        .args(["--timeout", "4"])
        .args(args)
        .arg(servent)
        .stdin(Stdio::piped());
    run_process(command, input, Duration::from_secs(60))
}

/// Asks a [`misleading_servent`] `? k`, then types `hello`; the client's notes, and
/// the sources of the wrong-seq RESP and of the TOPOREQ.
fn misled(env: &[(&str, &str)], args: &[&str]) -> (ClientRun, SocketAddr, SocketAddr) {
    let (addr, sender) = misleading_servent();
    let run = client_in(env, args, &addr, "? k\nhello\n");
    let (wrong_seq, wrong_type) = sender.join().unwrap();
    assert!(run.success, "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    (run, wrong_seq, wrong_type)
}

/// The assignment's three lines, and nothing else: the two wrong messages (in the
/// order they came), no answer, the unknown command.
fn assert_portuguese(run: &ClientRun, wrong_seq: SocketAddr, wrong_type: SocketAddr) {
    let mut lines: Vec<&str> = run.stderr.lines().collect();
    let incorrect = |from: SocketAddr| format!("Mensagem incorreta recebida de {from}");
    let mut wrong: Vec<String> = lines
        .drain(..2.min(lines.len()))
        .map(String::from)
        .collect();
    wrong.sort();
    let mut expected = vec![incorrect(wrong_seq), incorrect(wrong_type)];
    expected.sort();
    assert_eq!(wrong, expected, "{run:?}");
    assert_eq!(
        lines,
        ["Nenhuma resposta recebida", "Comando desconhecido"],
        "{run:?}"
    );
}

#[test]
fn client_lang_pt_says_the_assignment_s_three_lines() {
    let (run, wrong_seq, wrong_type) = misled(&[], &["--lang", "pt"]);
    assert_portuguese(&run, wrong_seq, wrong_type);
    // The ip:port is the real one, as the assignment's IP:PORTO asks.
    assert!(
        run.stderr.contains(&format!(
            "Mensagem incorreta recebida de 127.0.0.1:{}\n",
            wrong_seq.port()
        )),
        "{run:?}"
    );
}

#[test]
fn a_portuguese_lang_is_the_default() {
    let (run, wrong_seq, wrong_type) = misled(&[("LANG", "pt_BR.UTF-8")], &[]);
    assert_portuguese(&run, wrong_seq, wrong_type);
}

#[test]
fn lc_all_comes_before_lang() {
    let (run, wrong_seq, wrong_type) =
        misled(&[("LC_ALL", "pt_PT.UTF-8"), ("LANG", "en_US.UTF-8")], &[]);
    assert_portuguese(&run, wrong_seq, wrong_type);
}

#[test]
fn lang_en_overrides_a_portuguese_locale() {
    let (run, wrong_seq, wrong_type) = misled(
        &[("LANG", "pt_BR.UTF-8"), ("LC_ALL", "pt_BR.UTF-8")],
        &["--lang", "en"],
    );
    let seq_line = format!("unexpected message from {wrong_seq}: RESP for seq");
    let type_line = format!("unexpected message from {wrong_type}: TOPOREQ instead of RESP");
    assert!(run.stderr.contains(&seq_line), "{run:?}");
    assert!(run.stderr.contains(&type_line), "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{run:?}");
    assert_eq!(lines[2], "no answer received", "{run:?}");
    assert!(
        lines[3].starts_with("unknown command: \"hello\""),
        "{run:?}"
    );
    assert!(!run.stderr.contains("Mensagem"), "{run:?}");
}

#[test]
fn our_servent_in_portuguese_no_answer_and_unknown_command() {
    let dir = TempDir::new("lang-pt");
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    let run = client_in(&[], &["--lang", "pt"], &s1.local(), "? k\n? nada\nq\nQ\n");
    assert!(run.success, "{run:?}");
    assert_eq!(run.lines(), [format!("v {}", s1.local())], "{run:?}");
    assert_eq!(
        run.stderr, "Nenhuma resposta recebida\nComando desconhecido\n",
        "{run:?}"
    );
}

#[test]
fn both_flags_are_in_the_help() {
    let help = |binary: &str| {
        let out = Command::new(binary).arg("--help").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let servent = help(SERVENT);
    for needle in [
        "--ttl-rule <RULE>",
        "seed: test, then decrement",
        "2019: decrement, then test",
        "[default: seed]",
    ] {
        assert!(
            servent.contains(needle),
            "servent --help lacks {needle:?}:\n{servent}"
        );
    }
    let client = help(CLIENT);
    for needle in [
        "--lang <LANG>",
        "Comando desconhecido",
        "LC_ALL, LC_MESSAGES, LANG",
        "pt: Portuguese",
    ] {
        assert!(
            client.contains(needle),
            "client --help lacks {needle:?}:\n{client}"
        );
    }
}
