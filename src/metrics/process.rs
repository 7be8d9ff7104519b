//! The process collector: CPU seconds, resident memory, open and allowed file descriptors and the
//! start time, read from `/proc/self` at every scrape under the names every Prometheus client
//! library uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …), so stock
//! dashboards and alerts work unchanged. Off Linux (no `/proc`) the collector reports nothing.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/*/stat`: the kernel's `USER_HZ`, fixed at 100 in its ABI on
/// every architecture Linux runs on.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of the process's figures.
#[derive(Debug, Default, PartialEq)]
pub struct Reading {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_secs: f64,
}

impl Reading {
    /// Read `/proc/self`; `None` where it is not there.
    pub fn now() -> Option<Reading> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let mut r = parse(&stat, &status, &boot, &limits)?;
        // The directory handle that counted them is one of them.
        r.open_fds = open_fds.saturating_sub(1);
        Some(r)
    }
}

/// The figures from the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and
/// `/proc/self/limits` (open fds are counted apart).
pub fn parse(stat: &str, status: &str, boot: &str, limits: &str) -> Option<Reading> {
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14, 15 (utime, stime) and 22 (starttime), numbered from 1 with field 3 first here.
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let cpu_seconds = (field(14)? + field(15)?) / TICKS_PER_SEC;
    let started_ticks = field(22)?;
    let boot_time: f64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let resident_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let max_fds = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
    Some(Reading {
        cpu_seconds,
        resident_bytes: resident_kib * 1024,
        open_fds: 0,
        max_fds,
        start_time_secs: boot_time + started_ticks / TICKS_PER_SEC,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = Reading::now() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(r.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                r.resident_bytes as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                r.open_fds as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                r.start_time_secs,
            ),
        ];
        let max = r.max_fds.map(|m| {
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                m as f64,
            )
        });
        for (name, help, value) in gauges.into_iter().chain(max) {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_the_proc_texts() {
        // A command name with a space and a parenthesis, as `comm` may hold.
        let stat = "4242 (crossroom (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 150 0 0 20 0 9 0 12345 1000000 2500 18446744073709551615";
        let status = "Name:\tcrossroom\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        let r = parse(stat, status, boot, limits).expect("parsed");
        assert_eq!(r.cpu_seconds, 4.0);
        assert_eq!(r.resident_bytes, 20480 * 1024);
        assert_eq!(r.max_fds, Some(20000));
        assert_eq!(r.start_time_secs, 1_700_000_000.0 + 123.45);
    }

    #[test]
    fn this_process_reads() {
        let r = Reading::now().expect("/proc is there");
        assert!(r.resident_bytes > 0 && r.open_fds > 0 && r.start_time_secs > 1.0e9);
    }
}
