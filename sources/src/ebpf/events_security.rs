//! The security records' events (issue #13): one arm per kind, called by
//! [`super::events::to_event`]. Process keys are rounded as everywhere
//! ([`super::events::process_key`]); a ptrace target that could not be
//! resolved (the attach failed) keeps the pid asked for and start time 0.
//! A network-policy event leaves here with an empty `rule_id` and
//! `policy_digest`: the reader names its rule key in the same pass that
//! completes a batch (`pipeline::event::RuleNames::fill`).

use pipeline::event::Protocol;
use pipeline::event::{
    BpfProgramLoad, CredentialChange, FileChange, ModuleLoad, NamespaceChange, NetAccept, NetListen, NetPolicy,
    NetSend, PtraceAttach,
};
use pipeline::{Event, EventMeta, ProcessKey};

use super::events::process_key;
use super::records_security::SecurityRecord;

/// The event of a security record.
pub fn to_event(record: SecurityRecord, event_id: u64, tick_ns: u64) -> Event {
    let meta = |ts_ns: u64| EventMeta { ts_ns, event_id };
    match record {
        SecurityRecord::FileChange(r) => Event::FileChange(FileChange {
            meta: meta(r.ts_ns),
            process: process_key(&r.proc, tick_ns),
            op: r.op,
            path: r.path,
            target: r.target,
            mode: r.mode,
            result: r.result,
            context: None,
        }),
        SecurityRecord::Credentials(r) => Event::CredentialChange(CredentialChange {
            meta: meta(r.ts_ns),
            process: process_key(&r.proc, tick_ns),
            syscall: r.syscall,
            old: r.old,
            new: r.new,
            result: r.result,
            context: None,
        }),
        SecurityRecord::Namespace(r) => Event::NamespaceChange(NamespaceChange {
            meta: meta(r.ts_ns),
            process: process_key(&r.proc, tick_ns),
            syscall: r.syscall,
            flags: r.flags,
            result: r.result,
            context: None,
        }),
        SecurityRecord::Ptrace(r) => Event::PtraceAttach(PtraceAttach {
            meta: meta(r.ts_ns),
            process: process_key(&r.proc, tick_ns),
            request: r.request,
            target: if r.target.start_boottime_ns == 0 {
                ProcessKey { pid: r.target.tgid, start_time_ns: 0 }
            } else {
                process_key(&r.target, tick_ns)
            },
            result: r.result,
            context: None,
        }),
        SecurityRecord::Module(r) => Event::ModuleLoad(ModuleLoad {
            meta: meta(r.ts_ns),
            process: process_key(&r.proc, tick_ns),
            syscall: r.syscall,
            path: r.path,
            params: r.params,
            result: r.result,
            context: None,
        }),
        SecurityRecord::BpfLoad(r) => Event::BpfProgramLoad(BpfProgramLoad {
            meta: meta(r.ts_ns),
            process: process_key(&r.proc, tick_ns),
            prog_type: r.prog_type,
            prog_name: r.name,
            insn_count: r.insn_count,
            result: r.result,
            context: None,
        }),
        SecurityRecord::Listen(r) => Event::NetListen(NetListen {
            meta: meta(r.ts_ns),
            process: process_key(&r.proc, tick_ns),
            protocol: Protocol::Tcp,
            addr: r.addr,
            port: r.port,
            backlog: r.backlog,
            result: r.result,
            context: None,
        }),
        SecurityRecord::Accept(r) => Event::NetAccept(NetAccept {
            meta: meta(r.ts_ns),
            process: process_key(&r.proc, tick_ns),
            protocol: Protocol::Tcp,
            local_addr: r.local_addr,
            local_port: r.local_port,
            peer_addr: r.peer_addr,
            peer_port: r.peer_port,
            context: None,
        }),
        SecurityRecord::UdpSend(r) => Event::NetSend(NetSend {
            meta: meta(r.ts_ns),
            process: process_key(&r.proc, tick_ns),
            protocol: Protocol::Udp,
            dst_addr: r.addr,
            dst_port: r.port,
            bytes: r.bytes,
            context: None,
        }),
        SecurityRecord::NetPolicy(r) => Event::NetPolicy(NetPolicy {
            meta: meta(r.ts_ns),
            process: process_key(&r.proc, tick_ns),
            rule_id: "".into(),
            rule_key: r.rule_key,
            action: r.action,
            dry_run: r.dry_run,
            protocol: r.protocol,
            dst_addr: r.addr,
            dst_port: r.port,
            cgroup_id: r.cgroup_id,
            generation: r.generation,
            policy_digest: "".into(),
            context: None,
        }),
    }
}
