//! Deterministic sampling, exactly MLflow's online-scoring rule
//! (`genai/scorers/online/sampler.py`): an entity (trace id, or session id
//! for session judges) is hashed with each scorer's name, and scorers
//! sharing a filter are picked "densely" — sorted by sample rate, a scorer
//! runs only on entities every higher-rate scorer also got. Re-runs pick the
//! same traces, and tracebox picks the same traces MLflow would.
//!
//! Pure functions; no I/O.

use sha2::{Digest, Sha256};

/// `int(sha256(f"{entity}:{name}").hexdigest(), 16) / 2**256`, rounded to
/// the nearest f64 exactly as Python's true division does.
pub fn hash_fraction(entity_id: &str, scorer_name: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(entity_id.as_bytes());
    h.update(b":");
    h.update(scorer_name.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    fraction_of(&digest)
}

/// The correctly rounded value of a 256-bit big-endian integer / 2^256.
fn fraction_of(bytes: &[u8; 32]) -> f64 {
    let Some(first) = bytes.iter().position(|b| *b != 0) else {
        return 0.0;
    };
    // Take 64 bits starting at the leading one bit; fold everything below
    // into a sticky bit so u64 → f64 rounds like exact division would.
    let lead = bytes[first].leading_zeros() as usize;
    let bit_start = first * 8 + lead; // index of the leading one bit
    let mut window: u64 = 0;
    for i in 0..64 {
        let bit = bit_start + i;
        let v = if bit < 256 {
            (bytes[bit / 8] >> (7 - bit % 8)) & 1
        } else {
            0
        };
        window = (window << 1) | v as u64;
    }
    let rest_nonzero = (bit_start + 64..256).any(|bit| (bytes[bit / 8] >> (7 - bit % 8)) & 1 == 1);
    if rest_nonzero {
        window |= 1;
    }
    // window has its top bit set and represents 2^63 · 2^(-(bit_start+1)+... ).
    // value = window · 2^-(bit_start + 64).
    (window as f64) * 2f64.powi(-(bit_start as i32 + 64))
}

/// A scorer competing for an entity within one filter group.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub sample_rate: f64,
}

/// MLflow's dense sampling over scorers that share a filter: indices (into
/// `scorers`) of the ones selected for `entity_id`. The sort is stable, so
/// ties keep the given order.
pub fn sample(entity_id: &str, scorers: &[Candidate<'_>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scorers.len()).collect();
    order.sort_by(|&a, &b| {
        scorers[b]
            .sample_rate
            .partial_cmp(&scorers[a].sample_rate)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut selected = Vec::new();
    let mut prev_rate = 1.0f64;
    for i in order {
        let rate = scorers[i].sample_rate;
        let conditional = if prev_rate > 0.0 {
            rate / prev_rate
        } else {
            0.0
        };
        if hash_fraction(entity_id, scorers[i].name) > conditional {
            break;
        }
        selected.push(i);
        prev_rate = rate;
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_is_exact_division() {
        let mut b = [0u8; 32];
        b[0] = 0x80;
        assert_eq!(fraction_of(&b), 0.5);
        b = [0xff; 32];
        // (2^256 - 1) / 2^256 rounds to 1.0 in f64, as in Python.
        assert_eq!(fraction_of(&b), 1.0);
        b = [0; 32];
        b[31] = 1;
        assert_eq!(fraction_of(&b), 2f64.powi(-256));
    }

    #[test]
    fn matches_python_reference_values() {
        // int(hashlib.sha256(f"{e}:{n}".encode()).hexdigest(), 16) / 2**256,
        // printed with repr() by CPython 3.11.
        for (e, n, want) in [
            ("tr-abc", "politeness", 0.4223458268702585),
            (
                "tr-0123456789abcdef0123456789abcdef",
                "safety",
                0.6811944666874341,
            ),
            ("sess-1", "user_frustration", 0.8809275305609244),
        ] {
            assert_eq!(hash_fraction(e, n), want, "{e}:{n}");
        }
    }

    #[test]
    fn rate_one_takes_everything_and_zero_nothing() {
        let c = [Candidate {
            name: "j",
            sample_rate: 1.0,
        }];
        assert!((0..200).all(|i| sample(&format!("tr-{i}"), &c) == vec![0]));
        let c = [Candidate {
            name: "j",
            sample_rate: 0.0,
        }];
        assert!((0..200).all(|i| sample(&format!("tr-{i}"), &c).is_empty()));
    }

    #[test]
    fn dense_sampling_nests_lower_rates() {
        let c = [
            Candidate {
                name: "low",
                sample_rate: 0.2,
            },
            Candidate {
                name: "high",
                sample_rate: 0.6,
            },
        ];
        let mut high = 0;
        let mut low = 0;
        for i in 0..5000 {
            let s = sample(&format!("tr-{i:032x}"), &c);
            if s.contains(&0) {
                assert!(
                    s.contains(&1),
                    "low-rate scorer only with the high-rate one"
                );
                low += 1;
            }
            high += s.contains(&1) as i32;
        }
        assert!((2700..3300).contains(&high), "{high}");
        assert!((800..1200).contains(&low), "{low}");
    }
}
