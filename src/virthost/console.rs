//! What a guest's serial console log says about its boot: a kernel panic,
//! or a boot loop (the kernel booting again and again in the same run of
//! the VM). Pure text analysis; `up` reads the log (see
//! [`super::libvirt::Connection::console_log_read`]) while it waits for the
//! VMs' addresses, and restarts a VM in trouble once.

/// The kernel's panic message: `panic()` prints it at KERN_EMERG, so it
/// reaches the serial console whatever the guest's log level.
const PANIC_MARKER: &str = "Kernel panic - not syncing";

/// The kernel's boot banner (`linux_banner`), printed once per boot at
/// KERN_NOTICE: visible unless the guest's console log level hides notices
/// (`quiet`, `loglevel=` below 6).
const BANNER_MARKER: &str = "Linux version ";

/// The longest unfinished line [`ConsoleWatch`] keeps: console lines are
/// short; a guest writing this much without a newline is not printing
/// kernel messages, and keeping it all would let it fill memory.
const MAX_PARTIAL_LINE: usize = 64 * 1024;

/// What went wrong at boot, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootTrouble {
    /// The kernel panicked; `line` is its panic message (from the marker on).
    KernelPanic { line: String },
    /// The kernel booted `boots` times since the VM was started.
    BootLoop { boots: usize },
}

impl BootTrouble {
    /// A few words for reports and events: `kernel panic`, `boot loop`.
    pub fn reason(&self) -> &'static str {
        match self {
            BootTrouble::KernelPanic { .. } => "kernel panic",
            BootTrouble::BootLoop { .. } => "boot loop",
        }
    }

    /// What the console showed, in one line.
    pub fn detail(&self) -> String {
        match self {
            BootTrouble::KernelPanic { line } => line.clone(),
            BootTrouble::BootLoop { boots } => {
                format!(
                    "the kernel booted {boots} times (\"{}\")",
                    BANNER_MARKER.trim()
                )
            }
        }
    }
}

/// Whether a console log (everything since the VM was started) shows a
/// kernel panic or a boot loop. A panic wins: a kernel that reboots after
/// panicking (`panic=N`) loops because of the panic, which says more.
pub fn boot_trouble(console: &str) -> Option<BootTrouble> {
    ConsoleScan::of(console).trouble()
}

/// The markers counted in some complete console lines. Scans of
/// consecutive pieces of a log add up to the scan of the whole log when the
/// pieces are split at line ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ConsoleScan {
    boots: usize,
    panic: Option<String>,
}

impl ConsoleScan {
    fn of(text: &str) -> ConsoleScan {
        let mut scan = ConsoleScan::default();
        for line in text.lines() {
            if is_banner(line) {
                scan.boots += 1;
            }
            if scan.panic.is_none()
                && let Some(at) = line.find(PANIC_MARKER)
            {
                scan.panic = Some(line[at..].trim_end().to_string());
            }
        }
        scan
    }

    fn add(&mut self, later: ConsoleScan) {
        self.boots += later.boots;
        if self.panic.is_none() {
            self.panic = later.panic;
        }
    }

    fn trouble(&self) -> Option<BootTrouble> {
        if let Some(line) = &self.panic {
            return Some(BootTrouble::KernelPanic { line: line.clone() });
        }
        (self.boots > 1).then_some(BootTrouble::BootLoop { boots: self.boots })
    }
}

/// The kernel's boot banner: `Linux version 6.1.0-18-amd64 (...)`, after
/// the printk timestamp. A version number must follow, so that prose
/// mentioning "Linux version" (a login banner, a program's output) does not
/// count as a boot.
fn is_banner(line: &str) -> bool {
    line.match_indices(BANNER_MARKER).any(|(at, m)| {
        line[at + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// A console log followed as it grows: fed the bytes that were appended
/// since the last time, it says what the whole log shows so far (as
/// [`boot_trouble`] of the whole text would), keeping only counts and the
/// unfinished last line.
#[derive(Clone, Debug, Default)]
pub struct ConsoleWatch {
    complete: ConsoleScan,
    partial: Vec<u8>,
}

impl ConsoleWatch {
    pub fn new() -> ConsoleWatch {
        ConsoleWatch::default()
    }

    /// Take the next bytes of the log (any split: mid-line, mid-character).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let done = match self.partial.iter().rposition(|b| *b == b'\n') {
            Some(last_newline) => last_newline + 1,
            // no line end in sight: give up on keeping the line whole (a
            // marker across this cut is missed; see MAX_PARTIAL_LINE)
            None if self.partial.len() > MAX_PARTIAL_LINE => self.partial.len(),
            None => return,
        };
        let lines: Vec<u8> = self.partial.drain(..done).collect();
        self.complete
            .add(ConsoleScan::of(&String::from_utf8_lossy(&lines)));
    }

    /// What the log shows so far, its unfinished last line included.
    pub fn trouble(&self) -> Option<BootTrouble> {
        let mut scan = self.complete.clone();
        scan.add(ConsoleScan::of(&String::from_utf8_lossy(&self.partial)));
        scan.trouble()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Debian 12 cloud kernel's first lines on ttyS0 (default log level).
    const BOOT: &str = "[    0.000000] Linux version 6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)\r\n\
[    0.000000] Command line: BOOT_IMAGE=/vmlinuz root=LABEL=rootfs ro console=tty0 console=ttyS0,115200n8\r\n\
[    0.000000] BIOS-provided physical RAM map:\r\n\
[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable\r\n\
[    0.412345] clocksource: Switched to clocksource tsc-early\r\n";

    /// The IO-APIC timer check failing on a starved vCPU (issue 17).
    const TIMER_PANIC: &str = "[    0.733000] ..TIMER: vector=0x30 apic1=0 pin1=2 apic2=-1 pin2=-1\r\n\
[    0.981000] ..MP-BIOS bug: 8254 timer not connected to IO-APIC\r\n\
[    1.207000] Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug and send a report.  Then try booting with the 'noapic' option.\r\n\
[    1.210000] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0-28-cloud-amd64 #1  Debian 6.1.119-1\r\n\
[    1.215000] ---[ end Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug and send a report.  Then try booting with the 'noapic' option. ]---\r\n";

    /// A root file system the kernel cannot mount (no initramfs init).
    const ROOT_PANIC: &str = "[    2.104000] /dev/root: Can't open blockdev\r\n\
[    2.105000] VFS: Cannot open root device \"LABEL=rootfs\" or unknown-block(0,0): error -6\r\n\
[    2.106000] Please append a correct \"root=\" boot option; here are the available partitions:\r\n\
[    2.110000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n";

    /// A guest that got to its login prompt.
    const HEALTHY_END: &str = "[  OK  ] Reached target multi-user.target - Multi-User System.\r\n\
\r\n\
Debian GNU/Linux 12 vm1 ttyS0\r\n\
\r\n\
vm1 login: ";

    #[test]
    fn healthy_boots_show_nothing() {
        assert_eq!(boot_trouble(""), None);
        assert_eq!(boot_trouble(&format!("{BOOT}{HEALTHY_END}")), None);
        // kubelab's own images log at loglevel=4: no banner at all
        assert_eq!(boot_trouble(HEALTHY_END), None);
        // "Linux version" in prose is not a boot
        let prose = format!("{BOOT}motd: Linux version information is in /proc/version\r\n");
        assert_eq!(boot_trouble(&prose), None);
    }

    #[test]
    fn a_kernel_panic_is_found_with_its_message() {
        let log = format!("{BOOT}{TIMER_PANIC}");
        let t = boot_trouble(&log).unwrap();
        assert_eq!(
            t,
            BootTrouble::KernelPanic {
                line: "Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug and send a report.  Then try booting with the 'noapic' option.".into()
            }
        );
        assert_eq!(t.reason(), "kernel panic");
        // without the banner (loglevel=4) the panic still shows
        assert!(matches!(
            boot_trouble(ROOT_PANIC),
            Some(BootTrouble::KernelPanic { line }) if line == "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
        ));
    }

    #[test]
    fn a_boot_loop_is_the_banner_more_than_once() {
        let twice = format!("{BOOT}[    3.000000] reboot: Restarting system\r\n{BOOT}");
        let t = boot_trouble(&twice).unwrap();
        assert_eq!(t, BootTrouble::BootLoop { boots: 2 });
        let prose = format!("{BOOT}motd: Linux version information\r\n{BOOT}{BOOT}");
        assert_eq!(
            boot_trouble(&prose),
            Some(BootTrouble::BootLoop { boots: 3 }),
            "three banners, the prose not counted"
        );
        assert_eq!(t.reason(), "boot loop");
        assert!(t.detail().contains("booted 2 times"), "{}", t.detail());
        // a kernel rebooting after its panic (panic=1): the panic is the news
        let looping = format!("{BOOT}{ROOT_PANIC}[    3.1] Rebooting in 1 seconds..\r\n{BOOT}");
        assert!(matches!(
            boot_trouble(&looping),
            Some(BootTrouble::KernelPanic { .. })
        ));
    }

    #[test]
    fn a_watch_fed_in_pieces_sees_what_the_whole_log_shows() {
        let mut logs: Vec<Vec<u8>> = [
            String::new(),
            format!("{BOOT}{HEALTHY_END}"),
            format!("{BOOT}{TIMER_PANIC}"),
            format!("{BOOT}{BOOT}"),
            format!("{BOOT}{ROOT_PANIC}{BOOT}"),
            // multi-byte characters and a line without an end
            format!("äöü {BOOT}garbage \x1b[0m ✓{BOOT}Linux version 6"),
        ]
        .map(String::into_bytes)
        .to_vec();
        // bytes that are not UTF-8 (line noise at boot)
        logs.push(
            [
                b"\xff\xfe\xc3".as_slice(),
                BOOT.as_bytes(),
                b"\x80",
                ROOT_PANIC.as_bytes(),
            ]
            .concat(),
        );
        for log in &logs {
            let bytes = log.as_slice();
            let whole = boot_trouble(&String::from_utf8_lossy(bytes));
            for piece in [1, 2, 3, 7, 64, 1000] {
                let mut w = ConsoleWatch::new();
                for chunk in bytes.chunks(piece) {
                    w.feed(chunk);
                }
                assert_eq!(w.trouble(), whole, "pieces of {piece} bytes of {log:?}");
            }
        }
    }

    #[test]
    fn a_watch_sees_a_panic_before_its_line_ends() {
        let mut w = ConsoleWatch::new();
        w.feed(BOOT.as_bytes());
        assert_eq!(w.trouble(), None);
        w.feed(b"[    1.2] Kernel panic - not syncing: Attempted to kill init!");
        assert!(matches!(
            w.trouble(),
            Some(BootTrouble::KernelPanic { line }) if line == "Kernel panic - not syncing: Attempted to kill init!"
        ));
    }

    #[test]
    fn a_watch_keeps_no_endless_line() {
        let mut w = ConsoleWatch::new();
        let junk = vec![b'x'; 10 * MAX_PARTIAL_LINE];
        for chunk in junk.chunks(4096) {
            w.feed(chunk);
        }
        assert!(w.partial.len() <= MAX_PARTIAL_LINE);
        w.feed(b"\n");
        w.feed(ROOT_PANIC.as_bytes());
        assert!(matches!(w.trouble(), Some(BootTrouble::KernelPanic { .. })));
    }
}
