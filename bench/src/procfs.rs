//! What the kernel says about a process: its resident memory (`/proc/<pid>/status`) and the CPU
//! time it has used (`/proc/<pid>/stat`), turned into a CPU share over a stretch of wall time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Resident memory in KiB: the `VmRSS` line of a `/proc/<pid>/status` text.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    // The kernel has only ever written kB here; anything else is not a text we understand.
    (words.next() == Some("kB")).then_some(value)
}

/// User plus system CPU time in clock ticks, from a `/proc/<pid>/stat` text.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself hold spaces and parentheses,
    // so the fields are counted from the last `)`.
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of `pid` in KiB, or `None` once it has exited.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss_kib(&status)
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

/// The pids of every process whose command name (`/proc/<pid>/comm`) `wanted` accepts, such as
/// a broker's or a database's processes, which the bench did not start.
pub fn pids_named(wanted: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| wanted(comm.trim_end()))
        })
        .collect()
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s times.
fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        // USER_HZ on every architecture this runs on.
        .unwrap_or(100)
}

/// A process's CPU time at one moment, to be compared with a later one.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    ticks: u64,
    at: Instant,
}

impl CpuSample {
    /// The CPU time `pid` has used so far, or `None` if it is gone.
    pub fn take(pid: u32) -> Option<Self> {
        Some(Self {
            ticks: cpu_ticks(pid)?,
            at: Instant::now(),
        })
    }

    /// The share of one core used between `self` and `later`, in percent.
    pub fn percent_until(&self, later: &Self) -> f64 {
        cpu_percent(
            later.ticks.saturating_sub(self.ticks),
            ticks_per_second(),
            later.at.saturating_duration_since(self.at),
        )
    }
}

/// The CPU time of a group of processes at one moment: a server made of many processes.
#[derive(Debug, Clone)]
pub struct GroupSample {
    ticks: HashMap<u32, u64>,
    at: Instant,
}

impl GroupSample {
    /// The CPU time each of `pids` has used so far; those already gone are left out.
    pub fn take(pids: &[u32]) -> Self {
        Self {
            ticks: pids
                .iter()
                .filter_map(|&pid| Some((pid, cpu_ticks(pid)?)))
                .collect(),
            at: Instant::now(),
        }
    }

    /// The share of one core the group used between `self` and `later`, in percent, over the
    /// processes present at both moments: one that started or ended between them is missed.
    pub fn percent_until(&self, later: &Self) -> f64 {
        cpu_percent(
            group_ticks_between(&self.ticks, &later.ticks),
            ticks_per_second(),
            later.at.saturating_duration_since(self.at),
        )
    }
}

fn group_ticks_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after
        .iter()
        .filter_map(|(pid, &t)| Some(t.saturating_sub(*before.get(pid)?)))
        .sum()
}

/// `ticks` of CPU time at `per_second` ticks a second, over `wall`, as percent of one core.
pub fn cpu_percent(ticks: u64, per_second: u64, wall: Duration) -> f64 {
    let wall = wall.as_secs_f64();
    if wall <= 0.0 || per_second == 0 {
        return 0.0;
    }
    ticks as f64 / per_second as f64 / wall * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tproducts\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  812340 kB\nVmSize:\t  745612 kB\nVmHWM:\t   31204 kB\n\
        VmRSS:\t   28816 kB\nRssAnon:\t   12004 kB\nThreads:\t5\n";

    #[test]
    fn rss_is_read_from_the_vmrss_line_not_its_neighbours() {
        assert_eq!(parse_vm_rss_kib(STATUS), Some(28_816));
    }

    #[test]
    fn a_status_without_vmrss_has_no_rss() {
        // Kernel threads and zombies have no VmRSS line.
        assert_eq!(
            parse_vm_rss_kib("Name:\tkworker/0:1\nState:\tI (idle)\n"),
            None
        );
        assert_eq!(parse_vm_rss_kib("VmRSS:\t  12 MB\n"), None);
    }

    #[test]
    fn cpu_ticks_add_utime_and_stime_even_when_the_name_has_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 1510 0 0 0 \
            731 269 0 0 20 0 5 0 123456 745612288 7204 18446744073709551615 1 1 0 0 0 0 0 \
            4096 17987 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(731 + 269));
    }

    #[test]
    fn a_truncated_stat_has_no_cpu_ticks() {
        assert_eq!(parse_cpu_ticks("4242 (auth) S 1 4242"), None);
        assert_eq!(parse_cpu_ticks("no parentheses at all"), None);
    }

    #[test]
    fn cpu_percent_is_a_share_of_one_core() {
        // 150 ticks at 100 a second is 1.5 s of CPU; over 2 s that is 75% of one core.
        let percent = cpu_percent(150, 100, Duration::from_secs(2));
        assert!((percent - 75.0).abs() < 1e-9, "{percent}");
        // Two busy cores for one second.
        let percent = cpu_percent(200, 100, Duration::from_secs(1));
        assert!((percent - 200.0).abs() < 1e-9, "{percent}");
        assert_eq!(cpu_percent(10, 100, Duration::ZERO), 0.0);
    }

    #[test]
    fn a_group_counts_only_the_processes_present_at_both_samples() {
        let before = HashMap::from([(1, 100), (2, 50), (3, 7)]);
        // 3 has exited, 4 has started: neither is counted.
        let after = HashMap::from([(1, 160), (2, 55), (4, 900)]);
        assert_eq!(group_ticks_between(&before, &after), 65);
    }

    #[test]
    fn this_process_is_found_by_its_command_name() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let pids = pids_named(|comm| comm == me.trim_end());
        assert!(pids.contains(&std::process::id()), "{pids:?}");
        assert!(pids_named(|_| false).is_empty());
    }

    #[test]
    fn this_process_has_a_resident_size_and_cpu_time() {
        let pid = std::process::id();
        assert!(rss_kib(pid).is_some_and(|kib| kib > 0));
        assert!(CpuSample::take(pid).is_some());
    }
}
