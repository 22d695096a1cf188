//! The one mapping from decoded eBPF records to engine events, and the
//! process identity rule that makes eBPF and `/proc` agree.
//!
//! Identity: `/proc/PID/stat` gives a process's start time in clock ticks
//! (`USER_HZ`, 100 on every mainstream architecture), computed by the
//! kernel as `start_boottime / (1e9 / USER_HZ)`, and the procfs source
//! turns that into `ticks × 1e9 / clk_tck` nanoseconds. The eBPF programs
//! read the group leader's `start_boottime` in nanoseconds, so the key here
//! is that value rounded down to a whole tick: `ns / tick_ns × tick_ns`
//! with `tick_ns = 1e9 / sysconf(_SC_CLK_TCK)` (10 ms). Both sides then
//! hold the same number for the same process.

use pipeline::event::{FileOpen, NetConnect, ProcessExec, ProcessExit, ProcessFork, Protocol};
use pipeline::{Event, EventMeta, ProcessKey};

use super::records::{ProcIdentity, Record};

/// `SOCK_DGRAM`.
const SOCK_DGRAM: i16 = 2;

/// Nanoseconds per `/proc` clock tick on this host (`1e9 / USER_HZ`).
pub fn tick_ns() -> u64 {
    1_000_000_000 / rustix::param::clock_ticks_per_second().max(1)
}

/// The process key for a kernel-side identity, rounded as `/proc` rounds.
pub fn process_key(proc: &ProcIdentity, tick_ns: u64) -> ProcessKey {
    let tick_ns = tick_ns.max(1);
    ProcessKey { pid: proc.tgid, start_time_ns: proc.start_boottime_ns / tick_ns * tick_ns }
}

/// Turns one record into its event. `event_id` comes from the source's
/// context; `tick_ns` from [`tick_ns`].
///
/// - exec: `exe` is the path given to `execve` (not resolved), `argv` the
///   captured arguments; `argv_truncated` also covers an unreadable
///   argument area (then `argv` is empty); `attributes` is always set
///   (what the kernel knew at the exec: credentials, file, stdio, tty,
///   session, cwd, allow-listed environment).
/// - exit: `exit_code` is the shell's view (status, or 128 + signal).
/// - connect: the protocol is UDP for a `SOCK_DGRAM` socket and TCP
///   otherwise (including the rare socket whose type could not be read).
pub fn to_event(record: Record, event_id: u64, tick_ns: u64) -> Event {
    let key = |proc: &ProcIdentity| process_key(proc, tick_ns);
    match record {
        Record::Exec(exec) => Event::ProcessExec(ProcessExec {
            meta: EventMeta { ts_ns: exec.ts_ns, event_id },
            process: key(&exec.proc),
            ppid: exec.ppid,
            uid: exec.uid,
            gid: exec.gid,
            cgroup_id: exec.cgroup_id,
            comm: exec.comm,
            exe: exec.filename,
            argv: exec.argv,
            argv_truncated: exec.argv_truncated || exec.argv_unreadable,
            attributes: Some(exec.attributes),
            context: None,
        }),
        Record::Exit(exit) => Event::ProcessExit(ProcessExit {
            meta: EventMeta { ts_ns: exit.ts_ns, event_id },
            process: key(&exit.proc),
            exit_code: exit.exit_status(),
            cpu_ns: exit.cpu_ns,
            context: None,
        }),
        Record::Fork(fork) => Event::ProcessFork(ProcessFork {
            meta: EventMeta { ts_ns: fork.ts_ns, event_id },
            parent: key(&fork.parent),
            child: key(&fork.child),
            context: None,
        }),
        Record::Connect(connect) => Event::NetConnect(NetConnect {
            meta: EventMeta { ts_ns: connect.ts_ns, event_id },
            process: key(&connect.proc),
            protocol: if connect.sock_type == SOCK_DGRAM { Protocol::Udp } else { Protocol::Tcp },
            dst_addr: connect.addr,
            dst_port: connect.port,
            result: connect.result,
            context: None,
        }),
        Record::Open(open) => Event::FileOpen(FileOpen {
            meta: EventMeta { ts_ns: open.ts_ns, event_id },
            process: key(&open.proc),
            path: open.path,
            flags: open.flags,
            context: None,
        }),
        Record::Security(record) => super::events_security::to_event(record, event_id, tick_ns),
    }
}
