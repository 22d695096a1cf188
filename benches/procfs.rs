//! procfs scan cost per process: one full scan of the real `/proc` with
//! 1 000 extra `sleep` processes alive, in the steady state (every `stat`
//! descriptor kept open from the previous scan) and cold (the first scan,
//! which opens every descriptor and reads every command line), next to
//! same-run floors: open+read+close of every `/proc/PID/stat`, listing
//! `/proc`, and a bare `pread` on descriptors kept open.
//!
//! `cargo bench --bench procfs` — results are recorded in BENCHMARKS.md.
//! `HOSTFLOW_BENCH_SLEEPERS=N` changes the number of extra processes (0 when
//! `testbed/bench/procfs_compare.sh` has started them itself, so that `ps`,
//! the exporter and this bench see the same processes).

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sources::procfs::{Scanner, ScannerSettings};

const DEFAULT_SLEEPERS: usize = 1000;

/// Extra processes for the scan to find, killed and reaped when dropped
/// (also when a bench panics).
struct Sleepers(Vec<Child>);

impl Sleepers {
    fn spawn(n: usize) -> Sleepers {
        let mut sleepers = Sleepers(Vec::with_capacity(n));
        for _ in 0..n {
            let child = Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sleep");
            sleepers.0.push(child);
        }
        sleepers
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn scanner() -> Scanner {
    Scanner::new(ScannerSettings::default()).expect("/proc is readable")
}

fn list_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("list /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A quick, criterion-independent figure printed up front: the median of
/// `n_scans` steady scans and of 5 cold ones, per process, plus the CPU
/// time (user + system, from `/proc/thread-self/stat`) of the steady scans.
fn print_summary(steady: &mut Scanner, n_scans: usize) {
    let mut per_process_us = Vec::with_capacity(n_scans);
    let mut n_rows = 0;
    let cpu_before = thread_cpu_ticks();
    for _ in 0..n_scans {
        let started = Instant::now();
        let outcome = steady.scan(0).expect("scan");
        let elapsed = started.elapsed();
        n_rows += outcome.scanned();
        per_process_us.push(elapsed.as_secs_f64() * 1e6 / outcome.scanned() as f64);
    }
    let cpu_us = (thread_cpu_ticks() - cpu_before) as f64 / steady.clock_ticks_per_second() as f64 * 1e6;
    let steady_us = median(per_process_us);
    let n_processes = n_rows / n_scans;
    let mut cold_us = Vec::new();
    for _ in 0..5 {
        let mut fresh = scanner();
        let started = Instant::now();
        let outcome = fresh.scan(0).expect("scan");
        cold_us.push(started.elapsed().as_secs_f64() * 1e6 / outcome.scanned() as f64);
    }
    let cold_us = median(cold_us);
    let scan_ms = steady_us * n_processes as f64 / 1000.0;
    println!(
        "procfs: {n_processes} processes; steady scan {steady_us:.2} µs/process wall (median of {n_scans}), \
         {:.2} µs/process CPU; {scan_ms:.2} ms/scan = {:.3} % of one core at a 10 s interval; \
         cold first scan {cold_us:.2} µs/process (median of 5)",
        cpu_us / n_rows as f64,
        scan_ms / 10_000.0 * 100.0
    );
}

/// utime + stime of the calling thread, in clock ticks.
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("own stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); field 3 is the first after `comm`.
    fields[14 - 3].parse::<u64>().expect("utime") + fields[15 - 3].parse::<u64>().expect("stime")
}

fn procfs(c: &mut Criterion) {
    let n_sleepers =
        std::env::var("HOSTFLOW_BENCH_SLEEPERS").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_SLEEPERS);
    let sleepers = Sleepers::spawn(n_sleepers);
    std::thread::sleep(Duration::from_millis(200));
    let mut steady = scanner();
    let n_processes = steady.scan(0).expect("warm-up scan").scanned();
    print_summary(&mut steady, 50);

    let mut group = c.benchmark_group("procfs");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(n_processes as u64));

    group.bench_function("steady_scan", |b| b.iter(|| steady.scan(0).expect("scan")));
    group.bench_function("cold_scan", |b| {
        b.iter_batched_ref(scanner, |fresh| fresh.scan(0).expect("scan"), BatchSize::PerIteration)
    });

    // Floors, same run, same processes: what the kernel charges for
    // producing every `stat`, with nothing parsed or emitted.
    let pids = list_pids();
    group.bench_function("floor_open_read_close", |b| {
        let mut buf = vec![0u8; 1024];
        b.iter(|| {
            for pid in &pids {
                if let Ok(mut file) = File::open(format!("/proc/{pid}/stat")) {
                    let _ = file.read(&mut buf);
                }
            }
        })
    });
    group.bench_function("floor_list_proc", |b| b.iter(|| list_pids().len()));
    let files: Vec<File> = pids.iter().filter_map(|pid| File::open(format!("/proc/{pid}/stat")).ok()).collect();
    group.bench_function("floor_pread_kept_open", |b| {
        let mut buf = vec![0u8; 1024];
        b.iter(|| {
            for file in &files {
                let _ = file.read_at(&mut buf, 0);
            }
        })
    });
    group.finish();
    drop(files);
    drop(steady);
    drop(sleepers);
}

criterion_group!(benches, procfs);
criterion_main!(benches);
