//! Parsing `/proc/PID/stat` and `/proc/PID/cmdline` without allocating on
//! the hot path: byte slices and hand-rolled number parsing.
//!
//! The only tricky part of `stat` is field 2, `comm`: it is wrapped in
//! parentheses but may itself contain spaces and parentheses (a process can
//! name itself `a) (b`), so it ends at the *last* `)` of the line. Every
//! field after it is a plain number or, for field 3, one letter.

/// The fields of one `stat` line the procfs source uses. Field numbers are
/// those of proc(5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFields<'a> {
    /// Field 2 without its parentheses (may be empty, may hold spaces).
    pub comm: &'a [u8],
    /// Field 3, the scheduler state letter.
    pub state: u8,
    /// Field 4.
    pub ppid: u32,
    /// Field 7, the controlling terminal's device number (0: none); see
    /// [`tty_name`].
    pub tty_nr: u32,
    /// Field 9, the kernel's `PF_*` flags.
    pub flags: u32,
    /// Fields 14 + 15, user and system time in clock ticks.
    pub cpu_ticks: u64,
    /// Field 20.
    pub threads: u32,
    /// Field 22, start time in clock ticks since boot.
    pub start_ticks: u64,
    /// Field 24, resident set size in pages (a negative value reads as 0).
    pub rss_pages: u64,
}

// Where each field we read is among those after `comm`: field N of proc(5)
// is at index N - 3 (field 3, the state, comes first).
const STATE: usize = 0;
const PPID: usize = 1;
const TTY_NR: usize = 4;
const FLAGS: usize = 6;
const UTIME: usize = 11;
const STIME: usize = 12;
const THREADS: usize = 17;
const START_TIME: usize = 19;
const RSS: usize = 21;

/// `PF_KTHREAD` in field 9: a kernel thread, which has no command line.
pub const PF_KTHREAD: u32 = 0x0020_0000;

impl StatFields<'_> {
    /// True for kernel threads (`kthreadd` and its children).
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// Parses one `/proc/PID/stat` line; `None` when it is not one.
pub fn parse_stat(line: &[u8]) -> Option<StatFields<'_>> {
    let open = line.iter().position(|&b| b == b'(')?;
    let close = line.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = &line[open + 1..close];
    let mut fields = line[close + 1..].split(|&b| b == b' ' || b == b'\n').filter(|field| !field.is_empty());
    let mut parsed = StatFields {
        comm,
        state: 0,
        ppid: 0,
        tty_nr: 0,
        flags: 0,
        cpu_ticks: 0,
        threads: 0,
        start_ticks: 0,
        rss_pages: 0,
    };
    let mut utime = 0;
    for index in 0..=RSS {
        let field = fields.next()?;
        match index {
            STATE => parsed.state = *field.first()?,
            PPID => parsed.ppid = u32::try_from(parse_u64(field)?).ok()?,
            TTY_NR => parsed.tty_nr = u32::try_from(parse_i64(field)?).unwrap_or(0),
            FLAGS => parsed.flags = u32::try_from(parse_u64(field)?).ok()?,
            UTIME => utime = parse_u64(field)?,
            STIME => parsed.cpu_ticks = utime.checked_add(parse_u64(field)?)?,
            THREADS => parsed.threads = u32::try_from(parse_u64(field)?).ok()?,
            START_TIME => parsed.start_ticks = parse_u64(field)?,
            RSS => parsed.rss_pages = parse_i64(field)?.max(0).unsigned_abs(),
            _ => {}
        }
    }
    Some(parsed)
}

/// The name of a controlling terminal from `stat`'s `tty_nr` as the
/// kernel names it (and the ebpf exec record reports it): `pts/N` for the
/// Unix98 pty slaves (majors 136–143), `ttyN` for virtual consoles (major
/// 4, minor below 64), `ttySN` for serial ports (major 4, minors 64–255);
/// `""` for none or any other device.
pub fn tty_name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => String::new(),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 if minor < 256 => format!("ttyS{}", minor - 64),
        _ => String::new(),
    }
}

/// A decimal number of ASCII digits, without sign; `None` on anything else
/// or on overflow.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &b in digits {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
    }
    Some(value)
}

/// A decimal number with an optional leading `-`.
fn parse_i64(text: &[u8]) -> Option<i64> {
    match text.split_first() {
        Some((b'-', digits)) => i64::try_from(parse_u64(digits)?).ok().map(|v| -v),
        _ => i64::try_from(parse_u64(text)?).ok(),
    }
}

/// Turns the raw bytes of `/proc/PID/cmdline` into one line: NULs become
/// spaces, invalid UTF-8 becomes U+FFFD, surrounding whitespace goes, and
/// the result is cut to at most `max_bytes` bytes on a character boundary.
pub fn clean_cmdline(raw: &[u8], max_bytes: usize) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut line: String = text.chars().map(|c| if c == '\0' { ' ' } else { c }).collect();
    let trimmed = line.trim();
    if trimmed.len() != line.len() {
        line = trimmed.to_owned();
    }
    if line.len() > max_bytes {
        let mut cut = max_bytes;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.truncate(line.trim_end().len());
    }
    line
}

/// The last path component of a link target such as `/usr/bin/python3`,
/// without the ` (deleted)` suffix the kernel adds for a replaced binary.
pub fn exe_basename(target: &str) -> &str {
    let target = target.strip_suffix(" (deleted)").unwrap_or(target);
    target.rsplit('/').next().unwrap_or(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from this machine (`cat /proc/self/stat`), and its fields.
    const CAT: &[u8] = b"4242 (cat) R 4200 4242 4200 34816 4242 4194304 95 0 0 0 3 5 0 0 20 0 1 0 \
        1234567 5775360 448 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    fn check(line: &[u8], expected: Option<StatFields<'_>>) {
        assert_eq!(parse_stat(line), expected, "{}", String::from_utf8_lossy(line));
    }

    #[test]
    fn plain_line() {
        check(
            CAT,
            Some(StatFields {
                comm: b"cat",
                state: b'R',
                ppid: 4200,
                tty_nr: 34816,
                flags: 4_194_304,
                cpu_ticks: 8,
                threads: 1,
                start_ticks: 1_234_567,
                rss_pages: 448,
            }),
        );
    }

    #[test]
    fn comm_with_spaces_and_parentheses_ends_at_the_last_paren() {
        let line = b"77 (a) (b c)) S 1 77 77 0 -1 4194560 10 0 0 0 120 30 0 0 20 0 4 0 999 1000 25 0 0\n";
        check(
            line,
            Some(StatFields {
                comm: b"a) (b c)",
                state: b'S',
                ppid: 1,
                tty_nr: 0,
                flags: 4_194_560,
                cpu_ticks: 150,
                threads: 4,
                start_ticks: 999,
                rss_pages: 25,
            }),
        );
        // An empty comm, and one that is only a parenthesis.
        let empty = b"5 () Z 2 0 0 0 -1 2097216 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0 0\n";
        let parsed = parse_stat(empty).expect("parses");
        assert_eq!((parsed.comm, parsed.state, parsed.start_ticks), (&b""[..], b'Z', 42));
        assert!(parsed.is_kernel_thread());
        assert!(!parse_stat(CAT).is_some_and(|s| s.is_kernel_thread()));
        let paren = b"6 ()) R 2 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 43 0 7 0\n";
        assert_eq!(parse_stat(paren).map(|s| (s.comm, s.cpu_ticks, s.rss_pages)), Some((&b")"[..], 3, 7)));
    }

    #[test]
    fn tty_numbers_are_named_as_the_kernel_names_them() {
        assert_eq!(tty_name(34816), "pts/0", "major 136, minor 0");
        assert_eq!(tty_name((137 << 8) | 5), "pts/261");
        assert_eq!(tty_name((3 << 20) | (136 << 8) | 0x10), "pts/784", "minor 0x310: its high bits");
        assert_eq!(tty_name((4 << 8) | 1), "tty1");
        assert_eq!(tty_name((4 << 8) | 64), "ttyS0");
        assert_eq!(tty_name(0), "");
        assert_eq!(tty_name((5 << 8) | 1), "", "/dev/console is not named");
    }

    #[test]
    fn negative_rss_reads_as_zero_and_negative_tpgid_is_skipped() {
        let line = b"8 (x) S 1 8 8 0 -1 0 0 0 0 0 0 0 -5 -7 20 -3 1 0 50 0 -1 0\n";
        assert_eq!(parse_stat(line).map(|s| s.rss_pages), Some(0));
    }

    #[test]
    fn truncated_or_malformed_lines_are_rejected() {
        check(b"", None);
        check(b"12 (sh S 1 2 3", None);
        check(b"12 sh) S 1 2 3", None);
        // Cut before field 24.
        check(b"4242 (cat) R 4200 4242 4200 34816 4242 4194304 95 0 0 0 3 5 0 0 20 0 1 0 1234567 5775360", None);
        // A letter where a number belongs.
        check(b"9 (x) S 1 9 9 0 -1 0 0 0 0 0 1x 0 0 0 20 0 1 0 50 0 1 0\n", None);
        // Overflowing numbers.
        check(b"9 (x) S 99999999999 9 9 0 -1 0 0 0 0 0 1 0 0 0 20 0 1 0 50 0 1 0\n", None);
        check(b"9 (x) S 1 9 9 0 -1 0 0 0 0 0 18446744073709551616 0 0 0 20 0 1 0 50 0 1 0\n", None);
    }

    #[test]
    fn cmdline_is_one_bounded_line() {
        assert_eq!(clean_cmdline(b"sleep\x0060\x00", 4096), "sleep 60");
        assert_eq!(clean_cmdline(b"", 4096), "");
        assert_eq!(clean_cmdline(b"\0\0a\0\0", 4096), "a");
        assert_eq!(clean_cmdline(b"python3\0-c\0print(1)\0", 10), "python3 -c");
        assert_eq!(clean_cmdline(b"abc", 0), "");
        // Never cut inside a character: "é" is two bytes.
        assert_eq!(clean_cmdline("aé\0b".as_bytes(), 2), "a");
        assert_eq!(clean_cmdline("aé\0b".as_bytes(), 3), "aé");
        // A cut that lands after a separator leaves no trailing space.
        assert_eq!(clean_cmdline(b"ab\0cd", 3), "ab");
        assert_eq!(clean_cmdline(b"a\xffb", 4096), "a\u{fffd}b");
    }

    #[test]
    fn exe_basename_drops_the_directory_and_the_deleted_mark() {
        assert_eq!(exe_basename("/usr/bin/python3.11"), "python3.11");
        assert_eq!(exe_basename("/tmp/x (deleted)"), "x");
        assert_eq!(exe_basename("plain"), "plain");
    }
}
