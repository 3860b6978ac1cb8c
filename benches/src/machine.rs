//! What machine a run was made on, from `/proc`.

/// The machine of a run: CPU model, cores, memory, kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// `MemTotal` of `/proc/meminfo`, in MiB.
    pub memory_mib: u64,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
}

impl Machine {
    /// Reads the machine's description; unknown parts say "unknown".
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib: field(&meminfo, "MemTotal")
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
        }
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        format!(
            "{} ({} cores), {} MiB RAM, Linux {}",
            self.cpu, self.cores, self.memory_mib, self.kernel
        )
    }
}

/// The value of `key: value` in a `/proc` text file.
pub fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// This process's peak resident memory (`VmHWM`) in bytes, if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = field(&status, "VmHWM")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Resets this process's `VmHWM` to its current RSS (Linux: `5` written to
/// `/proc/self/clear_refs`), so that a later [`peak_rss_bytes`] is the peak
/// of what ran in between. False if the kernel refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_reads_proc_lines() {
        let text = "processor\t: 0\nmodel name\t: Some CPU @ 2GHz\n";
        assert_eq!(
            field(text, "model name").as_deref(),
            Some("Some CPU @ 2GHz")
        );
        assert_eq!(field(text, "absent"), None);
    }

    #[test]
    fn peak_rss_is_known_on_linux() {
        let peak = peak_rss_bytes().expect("VmHWM in /proc/self/status");
        assert!(peak > 0);
    }
}
