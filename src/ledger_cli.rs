//! `hostflow ledger`: the running agent's loss ledger, from `GET /ledger`,
//! as the chain from each source to each sink with every term, and where
//! the biggest loss and the longest wait are.

use std::fmt::Write as _;

use serde_json::Value;

use crate::commands::Outcome;
use crate::policy_cli::{http, HttpError};

/// Asks the agent at `api` for its ledger and prints it (`--json`: as is).
pub fn ledger(api: &str, json: bool) -> Outcome {
    let response = match http("GET", api, "/ledger") {
        Ok(response) => response,
        Err(HttpError::Refused) => {
            eprintln!("error: no agent API at {api} (is hostflow running?)");
            return Outcome::Unavailable;
        }
        Err(HttpError::Other(message)) => {
            eprintln!("error: agent API at {api}: {message}");
            return Outcome::Unavailable;
        }
    };
    if response.status != 200 {
        let shown: String = response.body.chars().take(200).collect();
        eprintln!("error: the agent at {api} answered HTTP {}: {shown}", response.status);
        return Outcome::Unavailable;
    }
    if json {
        println!("{}", response.body);
        return Outcome::Success;
    }
    match serde_json::from_str::<Value>(&response.body) {
        Ok(ledger) => {
            print!("{}", render(&ledger));
            if ledger["imbalances"].as_array().is_some_and(|list| !list.is_empty()) {
                Outcome::RunFailed
            } else {
                Outcome::Success
            }
        }
        Err(error) => {
            eprintln!("error: the agent's /ledger answer is not JSON: {error}");
            Outcome::Unavailable
        }
    }
}

/// The ledger as text: components in topology order with their terms, the
/// edges into each, then the verdict.
pub fn render(ledger: &Value) -> String {
    let mut text = String::new();
    let empty = Vec::new();
    let components = ledger["components"].as_array().unwrap_or(&empty);
    let edges = ledger["edges"].as_array().unwrap_or(&empty);
    for k in ledger["kernel"].as_array().unwrap_or(&empty) {
        if k["attempted"].as_u64().unwrap_or(0) == 0 {
            continue; // a program that never ran (not attached, or nothing happened)
        }
        let _ = writeln!(
            text,
            "kernel `{}` program {}: attempted {} = read {} + lost {} (ring full) + in ring {}",
            k["source"].as_str().unwrap_or("?"),
            k["program"].as_str().unwrap_or("?"),
            k["attempted"],
            k["read"],
            k["lost"],
            k["in_ring"]
        );
    }
    for c in components {
        let name = c["name"].as_str().unwrap_or("?");
        let _ = writeln!(
            text,
            "{} `{name}` ({})",
            c["kind"].as_str().unwrap_or("?"),
            c["type_name"].as_str().unwrap_or("?")
        );
        for e in edges.iter().filter(|e| e["to"] == c["name"]) {
            let _ = writeln!(
                text,
                "  <- `{}`: offered {} = accepted {} + discarded {} + in transit {}   (blocked {:.3} s)",
                e["from"].as_str().unwrap_or("?"),
                e["offered"],
                e["accepted"],
                describe_drops(&e["discarded"]),
                e["in_transit"],
                e["blocked_seconds"].as_f64().unwrap_or(0.0)
            );
        }
        if let Some(b) = c["buffer"].as_object() {
            let _ = writeln!(
                text,
                "  {} buffer: accepted {} + replayed {} = received {} + queued {} + discarded {}{}",
                if b["disk"] == true { "disk" } else { "memory" },
                b["accepted"],
                b["replayed"],
                b["received"],
                b["queued"],
                b["discarded"],
                match b["torn_records"].as_u64() {
                    Some(n) if n > 0 => format!("   (torn records skipped: {n})"),
                    _ => String::new(),
                }
            );
        }
        let _ = writeln!(
            text,
            "  received {} + created {} = sent {} + discarded {} + absorbed {} + in process {}",
            c["received"],
            c["created"],
            c["sent"],
            describe_drops(&c["discarded"]),
            c["absorbed"],
            c["in_process"]
        );
    }
    match ledger["imbalances"].as_array() {
        Some(list) if !list.is_empty() => {
            let _ = writeln!(text, "\nIMBALANCED ({}):", list.len());
            for line in list {
                let _ = writeln!(text, "  {}", line.as_str().unwrap_or("?"));
            }
        }
        _ => text.push_str("\nbalanced: every identity holds in this cut\n"),
    }
    match ledger["biggest_loss"].as_array() {
        Some(pair) => {
            let _ = writeln!(text, "biggest loss: {} ({} events)", pair[0].as_str().unwrap_or("?"), pair[1]);
        }
        None => text.push_str("biggest loss: none\n"),
    }
    match ledger["longest_blocked"].as_array() {
        Some(pair) => {
            let _ = writeln!(
                text,
                "longest blocked: {} ({:.3} s)",
                pair[0].as_str().unwrap_or("?"),
                pair[1].as_f64().unwrap_or(0.0)
            );
        }
        None => text.push_str("longest blocked: none\n"),
    }
    text
}

fn describe_drops(discarded: &Value) -> String {
    let Some(map) = discarded.as_object() else { return "0".to_owned() };
    let total: u64 = map.values().filter_map(Value::as_u64).sum();
    if map.is_empty() {
        return "0".to_owned();
    }
    let parts: Vec<String> = map.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
    format!("{total} ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_terms_and_verdict() {
        let ledger = serde_json::json!({
            "components": [
                {"name": "gen", "kind": "source", "type_name": "generator", "received": 10, "created": 0, "sent": 10,
                 "discarded": {}, "absorbed": 0, "in_process": 0, "buffer": null},
                {"name": "out", "kind": "sink", "type_name": "blackhole", "received": 6, "created": 0, "sent": 6,
                 "discarded": {}, "absorbed": 0, "in_process": 0,
                 "buffer": {"disk": false, "accepted": 6, "replayed": 0, "received": 6, "queued": 0, "discarded": 0, "torn_records": 0}}
            ],
            "edges": [{"from": "gen", "to": "out", "offered": 10, "accepted": 6, "discarded": {"buffer_full": 4},
                       "in_transit": 0, "blocked_seconds": 0.0}],
            "imbalances": [],
            "biggest_loss": ["edge `gen` -> `out`", 4],
            "longest_blocked": null
        });
        let text = render(&ledger);
        assert!(
            text.contains("<- `gen`: offered 10 = accepted 6 + discarded 4 (buffer_full 4) + in transit 0"),
            "{text}"
        );
        assert!(text.contains("balanced: every identity holds"), "{text}");
        assert!(text.contains("biggest loss: edge `gen` -> `out` (4 events)"), "{text}");
    }
}
