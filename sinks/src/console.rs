//! `console`: events as NDJSON lines on standard output (or error), for
//! looking at a topology by eye or piping it into `jq`.
//!
//! A detection is the exception: one line for a person watching the
//! console, e.g. `DETECTION high/very_high hf-linux-reverse-shell "Shell
//! with a socket on stdin" pid=1234 exe=/bin/bash [T1059.004]
//! events=17,18 — …`, since its NDJSON object (with the process context)
//! is hundreds of characters and the point of the console is to see it.
//! The other formats (`file`, the spool, Kafka) carry it in full. A
//! network-policy decision is one line too: `POLICY deny rule=deny-meta
//! pid=1234 exe=/usr/bin/curl → 169.254.169.254:80 [dry-run]`.

use std::io::Write as _;

use async_trait::async_trait;
use pipeline::event::NetPolicy;
use pipeline::{Batch, ComponentError, ComponentOptions, ConfigError, Detection, Event, Sink};
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

/// `[sinks.NAME] type = "console"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `stdout` (default) or `stderr`.
    #[serde(default)]
    pub target: Target,
}

/// Which standard stream.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    #[default]
    Stdout,
    Stderr,
}

/// Builds a console sink from its options (the registry entry).
pub fn build(options: &ComponentOptions) -> Result<Box<dyn Sink>, Vec<ConfigError>> {
    pipeline::build_with(options, |config: ConsoleConfig, _| {
        Ok(Box::new(ConsoleSink { target: config.target, buffer: Vec::new() }) as Box<dyn Sink>)
    })
}

/// A console sink.
pub struct ConsoleSink {
    target: Target,
    buffer: Vec<u8>,
}

#[async_trait]
impl Sink for ConsoleSink {
    async fn write(&mut self, batch: Batch) -> Result<(), ComponentError> {
        self.buffer.clear();
        encode_batch(&batch, &mut self.buffer);
        let result = match self.target {
            Target::Stdout => tokio::io::stdout().write_all(&self.buffer).await,
            Target::Stderr => tokio::io::stderr().write_all(&self.buffer).await,
        };
        result.map_err(|e| ComponentError::io("cannot write to the console", e))
    }

    async fn flush(&mut self) -> Result<(), ComponentError> {
        let result = match self.target {
            Target::Stdout => tokio::io::stdout().flush().await,
            Target::Stderr => tokio::io::stderr().flush().await,
        };
        result.map_err(|e| ComponentError::io("cannot flush the console", e))
    }
}

/// Appends one line per event: a detection as [`detection_line`], a
/// network-policy decision as [`policy_line`], any other event as NDJSON.
pub fn encode_batch(events: &[Event], out: &mut Vec<u8>) {
    for event in events {
        match event {
            Event::Detection(detection) => detection_line(detection, out),
            Event::NetPolicy(decision) => policy_line(decision, out),
            other => crate::ndjson::encode(other, out),
        }
        out.push(b'\n');
    }
}

/// A detection as one line (no newline): severity/confidence, rule, title,
/// the process (its executable when a context is attached), ATT&CK ids,
/// the events it rests on and the summary. Every control character of the
/// text is escaped, since rule texts quote what a process chose (its
/// path, its arguments): a newline or a terminal escape in them must not
/// start a fake line or repaint the console.
pub fn detection_line(detection: &Detection, out: &mut Vec<u8>) {
    let Detection { process, rule_id, title, severity, confidence, attack, event_ids, summary, context, .. } =
        detection;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "DETECTION {}/{} ", severity.as_str(), confidence.as_str());
    escaped(rule_id, out);
    out.extend_from_slice(b" \"");
    escaped(title, out);
    let _ = write!(out, "\" pid={}", process.pid);
    if let Some(exe) = context.as_deref().map(|c| &*c.exe).filter(|exe| !exe.is_empty()) {
        out.extend_from_slice(b" exe=");
        escaped(exe, out);
    }
    if !attack.is_empty() {
        out.extend_from_slice(b" [");
        for (position, id) in attack.iter().enumerate() {
            if position > 0 {
                out.push(b',');
            }
            escaped(id, out);
        }
        out.push(b']');
    }
    out.extend_from_slice(b" events=");
    for (position, id) in event_ids.iter().enumerate() {
        if position > 0 {
            out.push(b',');
        }
        out.extend_from_slice(itoa::Buffer::new().format(*id).as_bytes());
    }
    out.extend_from_slice(" \u{2014} ".as_bytes());
    escaped(summary, out);
}

/// A network-policy decision as one line (no newline): the action, the
/// rule (its id, or `key:` and the kernel's key in hex when the agent
/// could not name it), the process (its executable when a context is
/// attached), the destination, and `[dry-run]` for a deny
/// that was only reported. Text is escaped as in [`detection_line`].
pub fn policy_line(decision: &NetPolicy, out: &mut Vec<u8>) {
    let NetPolicy { process, rule_id, rule_key, action, dry_run, dst_addr, dst_port, context, .. } = decision;
    let _ = write!(out, "POLICY {} rule=", action.as_str());
    if rule_id.is_empty() {
        let _ = write!(out, "key:{rule_key:08x}");
    } else {
        escaped(rule_id, out);
    }
    let _ = write!(out, " pid={}", process.pid);
    if let Some(exe) = context.as_deref().map(|c| &*c.exe).filter(|exe| !exe.is_empty()) {
        out.extend_from_slice(b" exe=");
        escaped(exe, out);
    }
    let destination = std::net::SocketAddr::new(*dst_addr, *dst_port);
    let _ = write!(out, " \u{2192} {destination}");
    if *dry_run {
        out.extend_from_slice(b" [dry-run]");
    }
}

/// `text` with control characters as Rust escapes (`\n`, `\u{1b}`) and a
/// double quote as `\"` (the title is quoted); the rest as is.
fn escaped(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            c if c.is_control() => {
                let _ = write!(out, "{}", c.escape_default());
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pipeline::event::context::sample_context;
    use pipeline::event::{Confidence, DetectionLayer, ProcessContext, Severity};
    use pipeline::{EventMeta, ProcessKey};

    use super::*;

    fn detection(context: Option<Arc<ProcessContext>>) -> Detection {
        Detection {
            meta: EventMeta { ts_ns: 5, event_id: 19 },
            process: ProcessKey { pid: 1234, start_time_ns: 9 },
            rule_id: "hf-linux-reverse-shell".into(),
            title: "Shell with a socket on stdin".into(),
            layer: DetectionLayer::L2,
            severity: Severity::High,
            confidence: Confidence::VeryHigh,
            attack: vec!["T1059.004".into()],
            event_ids: vec![17, 18],
            event_kind: "process_exec".into(),
            summary: "bash -i reads from 10.0.0.9:4444".into(),
            ruleset: "0123456789abcdef".into(),
            context,
        }
    }

    fn text(events: &[Event]) -> String {
        let mut out = Vec::new();
        encode_batch(events, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn a_detection_is_one_readable_line() {
        let context = ProcessContext { exe: "/bin/bash".into(), ..(*sample_context()).clone() };
        assert_eq!(
            text(&[Event::Detection(detection(Some(Arc::new(context))))]),
            "DETECTION high/very_high hf-linux-reverse-shell \"Shell with a socket on stdin\" pid=1234 \
             exe=/bin/bash [T1059.004] events=17,18 \u{2014} bash -i reads from 10.0.0.9:4444\n"
        );
        // Without a context the executable is unknown, so not shown; no
        // ATT&CK ids, no brackets.
        let bare = Detection { attack: Vec::new(), ..detection(None) };
        assert_eq!(
            text(&[Event::Detection(bare)]),
            "DETECTION high/very_high hf-linux-reverse-shell \"Shell with a socket on stdin\" pid=1234 \
             events=17,18 \u{2014} bash -i reads from 10.0.0.9:4444\n"
        );
    }

    #[test]
    fn text_a_process_chose_cannot_break_the_line_or_the_terminal() {
        let context = ProcessContext { exe: "/tmp/x\nDETECTION fake".into(), ..(*sample_context()).clone() };
        let hostile = Detection {
            title: "a \"quoted\" title".into(),
            summary: "argv: \u{1b}[2J\r\tdone".into(),
            ..detection(Some(Arc::new(context)))
        };
        let line = text(&[Event::Detection(hostile)]);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(!line.contains('\u{1b}') && !line.contains('\r') && !line.contains('\t'), "{line}");
        assert!(line.contains(r#""a \"quoted\" title""#), "{line}");
        assert!(line.contains(r"exe=/tmp/x\nDETECTION fake "), "{line}");
        assert!(line.ends_with("argv: \\u{1b}[2J\\r\\tdone\n"), "{line}");
    }

    fn decision(rule_id: &str, context: Option<Arc<ProcessContext>>) -> Event {
        Event::NetPolicy(NetPolicy {
            meta: EventMeta { ts_ns: 5, event_id: 20 },
            process: ProcessKey { pid: 1234, start_time_ns: 9 },
            rule_id: rule_id.into(),
            rule_key: 0x0bad_cafe,
            action: pipeline::event::PolicyAction::Deny,
            dry_run: true,
            protocol: pipeline::event::Protocol::Tcp,
            dst_addr: std::net::IpAddr::from([127, 0, 0, 2]),
            dst_port: 8080,
            cgroup_id: 77,
            generation: 3,
            policy_digest: "ab".into(),
            context,
        })
    }

    #[test]
    fn a_policy_decision_is_one_readable_line() {
        let context = ProcessContext { exe: "/usr/bin/curl".into(), ..(*sample_context()).clone() };
        assert_eq!(
            text(&[decision("deny-test", Some(Arc::new(context)))]),
            "POLICY deny rule=deny-test pid=1234 exe=/usr/bin/curl \u{2192} 127.0.0.2:8080 [dry-run]\n"
        );
        let Event::NetPolicy(unnamed) = decision("", None) else { unreachable!() };
        let enforced = NetPolicy { dry_run: false, dst_addr: "::1".parse().expect("v6"), ..unnamed };
        assert_eq!(
            text(&[Event::NetPolicy(enforced)]),
            "POLICY deny rule=key:0badcafe pid=1234 \u{2192} [::1]:8080\n",
            "an unknown key is shown as the kernel's key; an IPv6 destination bracketed"
        );
        let hostile = text(&[decision("x\n\u{1b}[2J", None)]);
        assert_eq!(hostile.matches('\n').count(), 1, "{hostile}");
        assert!(!hostile.contains('\u{1b}'), "{hostile}");
    }

    #[test]
    fn other_events_stay_ndjson_in_order() {
        let diag = Event::AgentDiag(pipeline::event::AgentDiag {
            meta: EventMeta { ts_ns: 1, event_id: 2 },
            module: "m".into(),
            event_type: "t".into(),
            reason: "r".into(),
        });
        let lines = text(&[diag.clone(), Event::Detection(detection(None)), diag]);
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("DETECTION "), "{}", lines[1]);
        for line in [lines[0], lines[2]] {
            let _: serde_json::Value = serde_json::from_str(line).expect("NDJSON");
        }
    }
}
