//! Where the machine's CPU went during a bench phase: the busy time of all cores (from
//! `/proc/stat`) and that of chosen processes (from `/proc/<pid>/stat`), so a rate can be
//! read as CPU time per operation. On these shared 2-core machines a rate alone says
//! little about cost: a phase bound by fsync latency and one bound by the cores give the
//! same kind of figure, and only the busy time tells them apart.
//!
//! Read by hand rather than through a crate (`procfs`): two lines of a format the kernel
//! keeps stable, for the bench only. Without `/proc` the figures are absent, not wrong.

use std::time::Instant;

/// CPU time used from [`CpuMeter::start`] to [`CpuMeter::stop`].
pub struct CpuMeter {
    started: Instant,
    /// Busy ticks of all cores at the start.
    machine: Option<u64>,
    /// (label, pid, ticks at the start)
    processes: Vec<(&'static str, u32, Option<u64>)>,
}

/// What a phase used. Seconds of CPU (one core fully busy for a second is 1.0).
pub struct CpuUse {
    pub wall_secs: f64,
    pub cores: usize,
    /// All cores, every process and the kernel; `None` without `/proc/stat`.
    pub busy_secs: Option<f64>,
    /// The processes asked for, by label.
    pub processes: Vec<(&'static str, Option<f64>)>,
}

impl CpuMeter {
    /// Starts counting the machine and the labelled processes (`(label, pid)`).
    pub fn start(processes: &[(&'static str, u32)]) -> Self {
        CpuMeter {
            started: Instant::now(),
            machine: machine_ticks(),
            processes: processes
                .iter()
                .map(|&(label, pid)| (label, pid, process_ticks(pid)))
                .collect(),
        }
    }

    pub fn stop(&self) -> CpuUse {
        let hz = rustix::param::clock_ticks_per_second() as f64;
        let busy_secs = match (self.machine, machine_ticks()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / hz),
            _ => None,
        };
        CpuUse {
            wall_secs: self.started.elapsed().as_secs_f64(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            busy_secs,
            processes: self
                .processes
                .iter()
                .map(|&(label, pid, before)| {
                    let used = match (before, process_ticks(pid)) {
                        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / hz),
                        _ => None,
                    };
                    (label, used)
                })
                .collect(),
        }
    }
}

impl CpuUse {
    /// E.g. "CPU 1.93 of 2 cores busy, 3.10 ms per upload (server 1.52, bench 0.61, the
    /// rest — Postgres, Redis, kernel — 0.97)".
    pub fn describe(&self, operations: usize, per: &str) -> String {
        let Some(busy) = self.busy_secs else {
            return "CPU not measured (no /proc/stat)".into();
        };
        let ms_per = |secs: f64| 1e3 * secs / operations.max(1) as f64;
        let mut parts = Vec::new();
        let mut accounted = 0.0;
        for (label, used) in &self.processes {
            if let Some(used) = used {
                parts.push(format!("{label} {:.2}", ms_per(*used)));
                accounted += used;
            }
        }
        let breakdown = if parts.is_empty() {
            String::new()
        } else {
            parts.push(format!(
                "the rest (Postgres, Redis, kernel) {:.2}",
                ms_per((busy - accounted).max(0.0))
            ));
            format!(" ({})", parts.join(", "))
        };
        format!(
            "CPU {:.2} of {} cores busy, {:.2} ms per {per}{breakdown}",
            busy / self.wall_secs.max(1e-9),
            self.cores,
            ms_per(busy)
        )
    }
}

/// Busy ticks of all cores, from the first line of `/proc/stat`: `cpu user nice system
/// idle iowait irq softirq steal …` in clock ticks. Busy is everything but idle and iowait
/// (a core waiting for the disk is free to run something else).
fn machine_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine(stat.lines().next()?)
}

fn parse_machine(line: &str) -> Option<u64> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let all: u64 = (0..8).map(at).sum();
    Some(all - at(3) - at(4))
}

/// utime + stime of a process (fields 14 and 15 of `/proc/<pid>/stat`), its threads
/// included.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process(&stat)
}

fn parse_process(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces: count from
    // the last ')'. After it come field 3 (state) onwards.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_ticks_leave_out_idle_and_iowait() {
        let busy = parse_machine("cpu  100 5 50 1000 30 2 3 4 0 0").expect("parses");
        assert_eq!(busy, 100 + 5 + 50 + 2 + 3 + 4);
        assert!(parse_machine("cpu0 1 2 3 4").is_none());
        assert!(parse_machine("cpu x 2 3").is_none());
    }

    #[test]
    fn process_ticks_are_counted_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_process(stat), Some(325));
        assert_eq!(parse_process("1 (x) S"), None);
    }

    #[test]
    fn this_process_uses_cpu_when_it_works() {
        let meter = CpuMeter::start(&[("bench", std::process::id())]);
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 100 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = meter.stop();
        let own = used.processes[0].1.expect("own /proc/<pid>/stat");
        // 100 ms of spinning: at least a few ticks of 10 ms, whatever else runs.
        assert!(own >= 0.03, "{own}");
        assert!(used.busy_secs.expect("/proc/stat") >= own * 0.5);
        assert!(used.describe(10, "op").contains("ms per op (bench "));
    }
}
