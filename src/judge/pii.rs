//! The built-in PII detector: deterministic, no model. Answers like MLflow's
//! `PIIDetection` scorer — `"no"` (fails the privacy check) with
//! `Detected PII: email, phone` when something is found, `"yes"` with
//! `No PII detected` otherwise — but with checksums where the format has
//! one, so fewer random numbers count as PII: credit cards must pass Luhn
//! and carry a known issuer prefix, IBANs must pass ISO 13616 mod-97.
//!
//! Types: `email`, `phone`, `ssn` (US, `NNN-NN-NNNN` with impossible area
//! and group numbers excluded), `credit_card`, `iban`, `ip_address`.
//! Pure functions; no I/O.

use std::sync::LazyLock;

use regex::Regex;

/// Every type, in the order findings are reported (MLflow's order, with
/// `iban` after `credit_card`).
pub const ALL_TYPES: &[&str] = &["email", "phone", "ssn", "credit_card", "iban", "ip_address"];

fn re(p: &str) -> Regex {
    Regex::new(p).expect("static regex")
}

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}"));
static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"\b(\d{3})-(\d{2})-(\d{4})\b"));
static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d(?:[ -]?\d){12,18}\b"));
static IBAN: LazyLock<Regex> = LazyLock::new(|| re(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| re(r"\+?\(?\d[\d\s().-]{6,}\d"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b(?:(?:25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(?:25[0-5]|2[0-4]\d|[01]?\d\d?)\b")
});
static DATE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{4}$"));

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The Luhn checksum over a digit string.
pub fn luhn_valid(number: &str) -> bool {
    let d = digits(number);
    if d.len() < 2 {
        return false;
    }
    let sum: u32 = d
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let n = (b - b'0') as u32;
            if i % 2 == 1 {
                let x = n * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                n
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Issuer prefixes of the major card networks (Visa, Mastercard, Amex,
/// Discover, Diners, JCB, UnionPay).
fn card_prefix(d: &str) -> bool {
    let p = |n: usize| d.get(..n).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    let len = d.len();
    (d.starts_with('4') && matches!(len, 13 | 16 | 19))
        || ((51..=55).contains(&p(2)) || (2221..=2720).contains(&p(4))) && len == 16
        || matches!(p(2), 34 | 37) && len == 15
        || (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3))) && (16..=19).contains(&len)
        || (matches!(p(2), 36 | 38) || (300..=305).contains(&p(3))) && (14..=19).contains(&len)
        || p(2) == 35 && (16..=19).contains(&len)
        || p(2) == 62 && (16..=19).contains(&len)
}

fn is_card(candidate: &str) -> bool {
    let d = digits(candidate);
    (13..=19).contains(&d.len()) && card_prefix(&d) && luhn_valid(&d)
}

/// ISO 13616: move the first four characters to the end, letters → 10..35,
/// the number mod 97 must be 1.
pub fn iban_valid(candidate: &str) -> bool {
    let s: String = candidate.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&s.len()) || !s.is_ascii() {
        return false;
    }
    let (head, tail) = s.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn ssn_valid(area: &str, group: &str, serial: &str) -> bool {
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

fn bounded(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(|c| c.is_ascii_alphanumeric())
        && !after.is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Spans of text that are something else than a phone number (cards,
/// IBANs, IP addresses), which phone candidates must not overlap.
fn non_phone_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    spans.extend(
        CARD.find_iter(text)
            .filter(|m| is_card(m.as_str()))
            .map(|m| (m.start(), m.end())),
    );
    spans.extend(
        IBAN.find_iter(text)
            .filter(|m| iban_valid(m.as_str()))
            .map(|m| (m.start(), m.end())),
    );
    spans.extend(IPV4.find_iter(text).map(|m| (m.start(), m.end())));
    spans
}

fn has_phone(text: &str) -> bool {
    let other = non_phone_spans(text);
    PHONE.find_iter(text).any(|m| {
        let s = m.as_str().trim();
        let overlaps = other.iter().any(|(a, b)| m.start() < *b && *a < m.end());
        if overlaps || !bounded(text, m.start(), m.end()) || DATE.is_match(s) || is_card(s) {
            return false;
        }
        let n = digits(s).len();
        let international = s.starts_with('+');
        // Separators or a leading + make a digit run look like a phone
        // number; a bare run of digits is an id unless it has 10-11 digits.
        let separated = s.chars().any(|c| matches!(c, ' ' | '-' | '.' | '(' | ')'));
        (international && (8..=15).contains(&n))
            || (separated && (10..=13).contains(&n))
            || (!separated && (n == 10 || (n == 11 && s.starts_with('1'))))
    })
}

/// Whether `text` contains PII of `kind` (one of [`ALL_TYPES`]).
pub fn contains(kind: &str, text: &str) -> bool {
    match kind {
        "email" => EMAIL.is_match(text),
        "phone" => has_phone(text),
        "ssn" => SSN
            .captures_iter(text)
            .any(|c| ssn_valid(&c[1], &c[2], &c[3])),
        "credit_card" => CARD.find_iter(text).any(|m| is_card(m.as_str())),
        "iban" => IBAN.find_iter(text).any(|m| iban_valid(m.as_str())),
        "ip_address" => IPV4.is_match(text),
        _ => false,
    }
}

/// The PII types found in `text`, among `types` (all when `None`), in
/// [`ALL_TYPES`] order.
pub fn detect(text: &str, types: Option<&[String]>) -> Vec<&'static str> {
    ALL_TYPES
        .iter()
        .copied()
        .filter(|t| types.is_none_or(|ts| ts.iter().any(|x| x == t)))
        .filter(|t| contains(t, text))
        .collect()
}

/// Types tracebox does not know, for a clear error at registration.
pub fn unknown_types(types: &[String]) -> Vec<String> {
    types
        .iter()
        .filter(|t| !ALL_TYPES.contains(&t.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&'static str> {
        detect(text, None)
    }

    #[test]
    fn emails() {
        assert_eq!(
            found("write to alice.smith+x@example.co.uk today"),
            vec!["email"]
        );
        assert!(found("alice at example dot com").is_empty());
    }

    #[test]
    fn phones() {
        for p in [
            "call 555-123-4567",
            "(555) 123-4567",
            "+1 555 123 4567",
            "+44 20 7946 0958",
            "+33612345678",
            "5551234567",
        ] {
            assert_eq!(found(p), vec!["phone"], "{p}");
        }
        for not in [
            "order 12345",
            "on 2024-01-15",
            "version 1.2.3",
            "v 3.14159",
            "host 192.168.100.200",
            "GB82 WEST 1234 5698 7654 32",
        ] {
            assert!(!contains("phone", not), "{not}");
        }
    }

    #[test]
    fn credit_cards_need_luhn_and_an_issuer() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert_eq!(
            found("card 4111 1111 1111 1111 exp 12/29"),
            vec!["credit_card"]
        );
        assert_eq!(found("amex 3782-822463-10005"), vec!["credit_card"]);
        assert!(found("4111 1111 1111 1112").is_empty());
        // Luhn-valid but no card network starts with 9.
        assert!(!contains("credit_card", "9111111111111113"));
    }

    #[test]
    fn ibans_need_mod_97() {
        assert!(iban_valid("DE89370400440532013000"));
        assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_valid("DE89370400440532013001"));
        assert_eq!(
            found("pay to GB82 WEST 1234 5698 7654 32 please"),
            vec!["iban"]
        );
        assert_eq!(found("IBAN: DE89370400440532013000"), vec!["iban"]);
        assert!(found("ref DE00370400440532013000").is_empty());
    }

    #[test]
    fn ssns_and_ips() {
        assert_eq!(found("SSN 123-45-6789"), vec!["ssn"]);
        assert!(!contains("ssn", "000-12-3456"));
        assert!(!contains("ssn", "666-12-3456"));
        assert!(!contains("ssn", "123-00-4567"));
        assert_eq!(found("from 192.168.1.20"), vec!["ip_address"]);
        assert!(!contains("ip_address", "999.1.1.1"));
    }

    #[test]
    fn clean_text_and_type_selection() {
        assert!(found("The capital of France is Paris.").is_empty());
        let text = "mail bob@example.com or 555-123-4567";
        assert_eq!(found(text), vec!["email", "phone"]);
        assert_eq!(detect(text, Some(&["phone".to_string()])), vec!["phone"]);
        assert_eq!(unknown_types(&["email".into(), "dna".into()]), vec!["dna"]);
    }
}
