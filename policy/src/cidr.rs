//! CIDR prefixes as the policy needs them: parsed strictly (so a typo is a
//! located problem, not a silently different network), normalized for the
//! canonical form, and compared for containment, which drives inheritance,
//! loopback protection and the protected-destination check.
//!
//! Own code rather than a crate: the whole need is a `u128` and a length.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network prefix of one family. IPv4 keeps its address in the low 32
/// bits; an IPv4-mapped IPv6 prefix is IPv6 (the kernel's connect6 sees it
/// as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    // Field order is the sort order: IPv4 before IPv6, then network, then
    // shorter first, so a covering prefix sorts before what it covers.
    v6: bool,
    bits: u128,
    len: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IP address")]
    Address(String),
    #[error("prefix length `{text}` is not a number from 0 to {max}")]
    Length { text: String, max: u8 },
}

/// A parsed CIDR and whether the text had bits set below the prefix
/// length (`10.0.0.1/8`): the caller reports that, naming the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub cidr: Cidr,
    pub host_bits_set: bool,
}

impl Cidr {
    /// `ADDR/LEN`, or a bare address meaning one host.
    pub fn parse(text: &str) -> Result<Parsed, CidrError> {
        let trimmed = text.trim();
        let (addr_text, len_text) = match trimmed.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| CidrError::Address(addr_text.to_owned()))?;
        let (v6, bits, width) = match addr {
            IpAddr::V4(v4) => (false, u128::from(u32::from(v4)), 32u8),
            IpAddr::V6(v6) => (true, u128::from(v6), 128u8),
        };
        let len = match len_text {
            None => width,
            Some(len_text) => match len_text.parse::<u8>() {
                Ok(len) if len <= width && !len_text.starts_with('+') => len,
                _ => return Err(CidrError::Length { text: len_text.to_owned(), max: width }),
            },
        };
        let cidr = Cidr { v6, bits: bits & mask(len, v6), len };
        Ok(Parsed { cidr, host_bits_set: cidr.bits != bits })
    }

    /// The prefix covering exactly `addr`.
    pub fn host(addr: IpAddr) -> Cidr {
        match addr {
            IpAddr::V4(v4) => Cidr { v6: false, bits: u128::from(u32::from(v4)), len: 32 },
            IpAddr::V6(v6) => Cidr { v6: true, bits: u128::from(v6), len: 128 },
        }
    }

    /// `0.0.0.0/0` or `::/0`.
    pub fn everything(v6: bool) -> Cidr {
        Cidr { v6, bits: 0, len: 0 }
    }

    /// The loopback networks a deny must never cover by accident.
    pub fn loopback() -> [Cidr; 2] {
        [
            Cidr { v6: false, bits: u128::from(u32::from(Ipv4Addr::new(127, 0, 0, 0))), len: 8 },
            Cidr { v6: true, bits: u128::from(Ipv6Addr::LOCALHOST), len: 128 },
        ]
    }

    pub fn is_v6(self) -> bool {
        self.v6
    }

    pub fn prefix_len(self) -> u8 {
        self.len
    }

    /// The network address, IPv4 in the low 32 bits.
    pub fn bits(self) -> u128 {
        self.bits
    }

    pub fn v4_addr(self) -> Ipv4Addr {
        // Only IPv4 prefixes call this; the mask keeps it total anyway.
        Ipv4Addr::from((self.bits & u128::from(u32::MAX)) as u32)
    }

    pub fn v6_addr(self) -> Ipv6Addr {
        Ipv6Addr::from(self.bits)
    }

    /// Whether every address of `other` is in `self`.
    pub fn contains(self, other: Cidr) -> bool {
        self.v6 == other.v6 && self.len <= other.len && other.bits & mask(self.len, self.v6) == self.bits
    }

    /// Whether the two share any address: for prefixes, one contains the
    /// other.
    pub fn overlaps(self, other: Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }
}

fn mask(len: u8, v6: bool) -> u128 {
    let width: u32 = if v6 { 128 } else { 32 };
    let len = u32::from(len).min(width);
    if len == 0 {
        return 0;
    }
    let ones = u128::MAX << (128 - len);
    if v6 {
        ones
    } else {
        (ones >> 96) & u128::from(u32::MAX)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v6 {
            write!(f, "{}/{}", self.v6_addr(), self.len)
        } else {
            write!(f, "{}/{}", self.v4_addr(), self.len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).map(|p| p.cidr).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parses_normalizes_and_reports_host_bits() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("10.1.2.3").to_string(), "10.1.2.3/32");
        let parsed = Cidr::parse("10.1.2.3/8").expect("parses");
        assert!(parsed.host_bits_set);
        assert_eq!(parsed.cidr.to_string(), "10.0.0.0/8");
        assert_eq!(cidr("FD00:EC2::254/128").to_string(), "fd00:ec2::254/128");
        assert_eq!(cidr("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0/8").is_err());
        assert!(Cidr::parse("::/129").is_err());
        assert!(Cidr::parse("1.2.3.4/+8").is_err());
        assert_eq!(cidr("0.0.0.0/0"), Cidr::everything(false));
    }

    #[test]
    fn containment_is_per_family() {
        assert!(cidr("10.0.0.0/8").contains(cidr("10.1.0.0/16")));
        assert!(!cidr("10.1.0.0/16").contains(cidr("10.0.0.0/8")));
        assert!(cidr("0.0.0.0/0").contains(cidr("127.0.0.1/32")));
        assert!(!cidr("0.0.0.0/0").contains(cidr("::1/128")));
        assert!(cidr("::/0").overlaps(cidr("::1/128")));
        assert!(!cidr("10.0.0.0/8").overlaps(cidr("11.0.0.0/8")));
    }

    #[test]
    fn covering_prefixes_sort_first() {
        let mut all = [cidr("10.1.0.0/16"), cidr("::/0"), cidr("10.0.0.0/8"), cidr("9.0.0.0/8")];
        all.sort();
        let shown: Vec<String> = all.iter().map(|c| c.to_string()).collect();
        assert_eq!(shown, ["9.0.0.0/8", "10.0.0.0/8", "10.1.0.0/16", "::/0"]);
    }
}
