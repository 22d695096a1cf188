//! [`Argv`]: the arguments of an exec'd process, kept exactly (an argument
//! may contain spaces) in one shared allocation.

use std::fmt;
use std::sync::Arc;

/// The arguments of a process, exactly as it received them: an argument may
/// contain spaces (never a NUL), and may be empty.
///
/// Stored as one shared allocation, every argument followed by a NUL
/// (`"ls\0-l\0"`), which is also the kernel's layout of a process's
/// argument area; so a clone is a reference-count bump, and `[]`, `[""]`
/// and `["a b"]` vs `["a", "b"]` all stay distinct. [`Display`](fmt::Display)
/// joins the arguments with spaces, for humans (that form is ambiguous).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Argv {
    nul_terminated: Arc<str>,
}

impl Argv {
    /// From the arguments in order. An argument is cut at its first NUL, as
    /// a C program would read it.
    pub fn from_args<I>(args: I) -> Argv
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut text = String::new();
        for arg in args {
            let arg = arg.as_ref();
            text.push_str(arg.split('\0').next().unwrap_or_default());
            text.push('\0');
        }
        Argv { nul_terminated: Arc::from(text) }
    }

    /// From a process's argument area as the kernel lays it out: arguments
    /// each followed by a NUL. A last argument without its NUL (a capture
    /// cut short) is kept as an argument; bytes that are not UTF-8 become
    /// U+FFFD.
    pub fn from_nul_separated(bytes: &[u8]) -> Argv {
        let text = String::from_utf8_lossy(bytes);
        if text.is_empty() || text.ends_with('\0') {
            return Argv { nul_terminated: Arc::from(&*text) };
        }
        let mut text = text.into_owned();
        text.push('\0');
        Argv { nul_terminated: Arc::from(text) }
    }

    /// The arguments in order.
    pub fn iter(&self) -> std::str::SplitTerminator<'_, char> {
        self.nul_terminated.split_terminator('\0')
    }

    /// How many arguments.
    pub fn len(&self) -> usize {
        self.nul_terminated.bytes().filter(|&byte| byte == 0).count()
    }

    /// True for no argument at all.
    pub fn is_empty(&self) -> bool {
        self.nul_terminated.is_empty()
    }

    /// The arguments joined with single spaces, for humans and for
    /// `cmdline`-style text (ambiguous when an argument contains a space).
    pub fn joined(&self) -> String {
        self.joined_view().replace('\0', " ")
    }

    /// The stored form: every argument followed by a NUL.
    pub fn as_nul_terminated(&self) -> &str {
        &self.nul_terminated
    }

    /// The stored form without its last NUL: the joined text with NULs
    /// where [`joined`](Argv::joined) has spaces, so it has the same length
    /// and byte positions (for matching without building the joined text).
    pub fn joined_view(&self) -> &str {
        self.nul_terminated.strip_suffix('\0').unwrap_or(&self.nul_terminated)
    }
}

impl<'a> IntoIterator for &'a Argv {
    type Item = &'a str;
    type IntoIter = std::str::SplitTerminator<'a, char>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for Argv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for Argv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, arg) in self.iter().enumerate() {
            if position > 0 {
                f.write_str(" ")?;
            }
            f.write_str(arg)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds from `args` both ways and checks every view of the result.
    fn check(args: &[&str], joined: &str) {
        let argv = Argv::from_args(args);
        assert_eq!(argv.iter().collect::<Vec<_>>(), args);
        assert_eq!((argv.len(), argv.is_empty()), (args.len(), args.is_empty()));
        assert_eq!(argv.joined(), joined);
        assert_eq!(argv.to_string(), joined);
        assert_eq!(argv.joined_view().len(), joined.len());
        assert_eq!(format!("{argv:?}"), format!("{args:?}"));
        let kernel: Vec<u8> = args.iter().flat_map(|arg| arg.bytes().chain([0])).collect();
        assert_eq!(Argv::from_nul_separated(&kernel), argv, "the kernel's layout gives the same argv");
        assert_eq!(argv.as_nul_terminated().as_bytes(), kernel);
    }

    #[test]
    fn arguments_stay_exact() {
        check(&[], "");
        check(&[""], "");
        check(&["", ""], " ");
        check(&["ls", "-l", "/tmp"], "ls -l /tmp");
        check(&["sh", "-c", "echo a  b", ""], "sh -c echo a  b ");
        check(&["grüße", "\u{1F600}"], "grüße \u{1F600}");
        assert_ne!(Argv::from_args(["a b"]), Argv::from_args(["a", "b"]));
        assert_ne!(Argv::from_args([""]), Argv::default());
    }

    #[test]
    fn nuls_and_cut_captures() {
        assert_eq!(Argv::from_args(["a\0b", "c"]).iter().collect::<Vec<_>>(), ["a", "c"]);
        let cut = Argv::from_nul_separated(b"curl\0-sS\0http://exa");
        assert_eq!(cut.iter().collect::<Vec<_>>(), ["curl", "-sS", "http://exa"]);
        let lossy = Argv::from_nul_separated(b"a\xff\0");
        assert_eq!(lossy.iter().collect::<Vec<_>>(), ["a\u{FFFD}"]);
        assert!(Argv::from_nul_separated(b"").is_empty());
        let argv = Argv::from_args(["x", "y"]);
        assert_eq!((&argv).into_iter().count(), 2);
        assert!(std::sync::Arc::ptr_eq(&argv.clone().nul_terminated, &argv.nul_terminated), "a clone shares");
    }
}
