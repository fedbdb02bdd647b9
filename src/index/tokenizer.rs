//! The multilingual analyzer shared by indexing, querying and highlighting.
//!
//! Words are found with Unicode word boundaries (UAX #29, so Hindi vowel
//! signs, Cyrillic, Greek, Arabic, accents ... stay inside their words);
//! scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao,
//! Khmer, Myanmar) become one token per character, so a phrase query over
//! those characters finds any run of them ("退款" is the phrase 退 款).
//! Tokens are lower-cased and ASCII-folded ("Café" → "cafe"); very long
//! tokens (base64 blobs, minified data) are dropped.
//!
//! It is tantivy's `RemoveLongFilter`, `LowerCaser` and `AsciiFoldingFilter`
//! over our word splitter, fused into one token stream: on ASCII text
//! (nearly every span payload) the three filters come down to a length
//! check and `make_ascii_lowercase`, while as separate streams they scanned
//! every token twice more and were a twelfth of the indexing thread's time.
//! Other text goes through the real filters, token by token; a test holds
//! the fused analyzer to the filter chain.

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RawTokenizer, TextAnalyzer, Token, TokenStream, Tokenizer,
};
use unicode_segmentation::UnicodeSegmentation;

/// Name under which the analyzer is registered with tantivy.
pub const ANALYZER: &str = "tb_text";

/// Longest token kept, in bytes.
const MAX_TOKEN_BYTES: usize = 64;

/// The analyzer: word splitting, long-token removal, lower-casing, folding.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::from(WordTokenizer::default())
}

/// Tokens of `text` as the index sees them (lower-cased, folded), with
/// byte offsets into `text`.
pub fn tokens(text: &str) -> Vec<Token> {
    let mut a = analyzer();
    let mut stream = a.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().clone());
    }
    out
}

/// Scripts written without spaces between words.
fn is_unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF        // Thai, Lao
        | 0x1000..=0x109F      // Myanmar
        | 0x1780..=0x17FF      // Khmer
        | 0x2E80..=0x2FDF      // CJK radicals
        | 0x3005..=0x3007      // 々 〆 〇
        | 0x3040..=0x30FF      // Hiragana, Katakana
        | 0x31F0..=0x31FF      // Katakana extensions
        | 0x3400..=0x4DBF      // CJK extension A
        | 0x4E00..=0x9FFF      // CJK unified ideographs
        | 0xF900..=0xFAFF      // CJK compatibility ideographs
        | 0xFF66..=0xFF9F      // half-width Katakana
        | 0x20000..=0x3134F    // CJK extensions B..G
    )
}

/// Words of a text, long ones dropped (their positions stay counted, as
/// with `RemoveLongFilter`), lower-cased and ASCII-folded.
#[derive(Clone)]
pub struct WordTokenizer {
    /// `LowerCaser` and `AsciiFoldingFilter` for one non-ASCII word.
    fold: TextAnalyzer,
}

impl Default for WordTokenizer {
    fn default() -> Self {
        WordTokenizer {
            fold: TextAnalyzer::builder(RawTokenizer::default())
                .filter(LowerCaser)
                .filter(AsciiFoldingFilter)
                .build(),
        }
    }
}

impl WordTokenizer {
    fn normalize(&mut self, mut tokens: Vec<Token>) -> Vec<Token> {
        tokens.retain(|t| t.text.len() < MAX_TOKEN_BYTES);
        for t in &mut tokens {
            let folded = {
                let mut s = self.fold.token_stream(&t.text);
                s.advance().then(|| s.token().text.clone())
            };
            if let Some(f) = folded {
                t.text = f;
            }
        }
        tokens
    }
}

/// Tokens of one text: ASCII text (nearly every span payload) is split
/// lazily by `next_ascii_word`, the rest is segmented up front.
pub struct WordStream<'a> {
    text: &'a str,
    /// `None` on the ASCII path; the precomputed tokens otherwise.
    tokens: Option<Vec<Token>>,
    /// Byte offset (ASCII path) or index into `tokens`.
    at: usize,
    current: Token,
}

impl TokenStream for WordStream<'_> {
    fn advance(&mut self) -> bool {
        match &self.tokens {
            None => loop {
                let Some((from, to)) = next_ascii_word(self.text.as_bytes(), self.at) else {
                    return false;
                };
                self.at = to;
                self.current.position = self.current.position.wrapping_add(1);
                if to - from >= MAX_TOKEN_BYTES {
                    continue;
                }
                // Reuses the token's buffer: no allocation per word.
                self.current.text.clear();
                self.current.text.push_str(&self.text[from..to]);
                self.current.text.make_ascii_lowercase();
                self.current.offset_from = from;
                self.current.offset_to = to;
                return true;
            },
            Some(tokens) => match tokens.get(self.at) {
                Some(t) => {
                    self.current = t.clone();
                    self.at += 1;
                    true
                }
                None => false,
            },
        }
    }
    fn token(&self) -> &Token {
        &self.current
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
        let tokens = if text.is_ascii() {
            None
        } else {
            Some(self.normalize(unicode_tokens(text)))
        };
        WordStream {
            text,
            tokens,
            at: 0,
            // `advance` increments before the first token: position 0.
            current: Token {
                position: usize::MAX,
                ..Token::default()
            },
        }
    }
}

/// ASCII classes of UAX #29's word-break rules.
#[derive(Clone, Copy, PartialEq)]
enum Ascii {
    /// ALetter, Numeric, ExtendNumLet (`_`): they always join each other
    /// (WB5, WB8-WB10, WB13a/b).
    Letter,
    Digit,
    Underscore,
    /// MidLetter (`:`): joins letters only (WB6/7).
    MidLetter,
    /// MidNumLet and Single_Quote (`.` `'`): join letters or digits.
    MidNumLet,
    /// MidNum (`,` `;`): joins digits only (WB11/12).
    MidNum,
    Other,
}

/// [`class_of`] of every byte, looked up instead of matched: the word
/// splitter classifies every byte of every payload it indexes.
const CLASSES: [Ascii; 256] = {
    let mut table = [Ascii::Other; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = class_of(b as u8);
        b += 1;
    }
    table
};

#[inline]
fn class(b: u8) -> Ascii {
    CLASSES[b as usize]
}

const fn class_of(b: u8) -> Ascii {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => Ascii::Letter,
        b'0'..=b'9' => Ascii::Digit,
        b'_' => Ascii::Underscore,
        b':' => Ascii::MidLetter,
        b'.' | b'\'' => Ascii::MidNumLet,
        b',' | b';' => Ascii::MidNum,
        _ => Ascii::Other,
    }
}

/// Bytes of [`Ascii::Letter`], [`Ascii::Digit`] and [`Ascii::Underscore`]:
/// the test the splitter's inner loop makes on nearly every byte.
const IS_WORD: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(
            class_of(b as u8),
            Ascii::Letter | Ascii::Digit | Ascii::Underscore
        );
        b += 1;
    }
    table
};

/// The next word at or after byte `from` of ASCII `text`, as byte offsets:
/// exactly the UAX #29 word segments that contain a letter or digit, which
/// is what `unicode_tokens` keeps (the tests check the two agree), at a
/// fraction of the cost of the general segmenter.
fn next_ascii_word(text: &[u8], from: usize) -> Option<(usize, usize)> {
    let word = |i: usize| IS_WORD[text[i] as usize];
    let mut i = from;
    loop {
        // Skip to the start of a word segment.
        while i < text.len() && !word(i) {
            i += 1;
        }
        if i >= text.len() {
            return None;
        }
        let start = i;
        loop {
            while i < text.len() && word(i) {
                i += 1;
            }
            // A single middle character between two letters (`:` `.` `'`)
            // or two digits (`,` `;` `.` `'`) keeps the word whole.
            if i + 1 >= text.len() {
                break;
            }
            let joins = matches!(
                (class(text[i - 1]), class(text[i]), class(text[i + 1])),
                (
                    Ascii::Letter,
                    Ascii::MidLetter | Ascii::MidNumLet,
                    Ascii::Letter
                ) | (Ascii::Digit, Ascii::MidNum | Ascii::MidNumLet, Ascii::Digit)
            );
            if !joins {
                break;
            }
            i += 2;
        }
        // Underscores alone are no word (a join needs a letter or digit
        // before it, so only a segment that starts with `_` can be one).
        if text[start] != b'_' || text[start..i].iter().any(|&b| b != b'_') {
            return Some((start, i));
        }
    }
}

/// The general path: UAX #29 word boundaries, unspaced scripts split per
/// character.
fn unicode_tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut position = 0;
    let mut push = |from: usize, to: usize, s: &str| {
        tokens.push(Token {
            offset_from: from,
            offset_to: to,
            position,
            text: s.to_string(),
            position_length: 1,
        });
        position += 1;
    };
    for (start, word) in text.split_word_bound_indices() {
        if !word.chars().any(char::is_alphanumeric) {
            continue;
        }
        if word.chars().any(is_unspaced) {
            // One token per character of the unspaced script; runs of
            // other letters inside the segment stay whole.
            let mut run_start: Option<usize> = None;
            for (i, c) in word.char_indices() {
                let at = start + i;
                if is_unspaced(c) {
                    if let Some(rs) = run_start.take() {
                        push(rs, at, &text[rs..at]);
                    }
                    let end = at + c.len_utf8();
                    if c.is_alphanumeric() {
                        push(at, end, &text[at..end]);
                    }
                } else if c.is_alphanumeric() || c == '_' {
                    run_start.get_or_insert(at);
                } else if let Some(rs) = run_start.take() {
                    push(rs, at, &text[rs..at]);
                }
            }
            if let Some(rs) = run_start {
                let end = start + word.len();
                push(rs, end, &text[rs..end]);
            }
        } else {
            push(start, start + word.len(), word);
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        tokens(s).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn splits_many_scripts() {
        assert_eq!(
            words("Refund POLICY: café, naïve-user's e-mail 3.14"),
            vec![
                "refund", "policy", "cafe", "naive", "user's", "e", "mail", "3.14"
            ]
        );
        assert_eq!(words("我要退款"), vec!["我", "要", "退", "款"]);
        assert_eq!(
            words("返品ポリシー"),
            vec!["返", "品", "ポ", "リ", "シ", "ー"]
        );
        assert_eq!(words("Привет, мир"), vec!["привет", "мир"]);
        assert_eq!(words("हिन्दी भाषा"), vec!["हिन्दी", "भाषा"]);
        assert_eq!(words("환불 정책"), vec!["환불", "정책"]);
        assert_eq!(words("Straße"), vec!["strasse"]);
        assert!(words(&"x".repeat(100)).is_empty());
        let t = tokens("ab 退款");
        assert_eq!((t[1].offset_from, t[1].offset_to, t[1].position), (3, 6, 1));
        let t = tokens("ab, cd_9");
        assert_eq!((t[1].offset_from, t[1].offset_to, t[1].position), (4, 8, 1));
    }

    fn ascii_words(s: &str) -> Vec<(usize, usize, String)> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((from, to)) = next_ascii_word(s.as_bytes(), at) {
            out.push((from, to, s[from..to].to_string()));
            at = to;
        }
        out
    }

    fn general_words(s: &str) -> Vec<(usize, usize, String)> {
        unicode_tokens(s)
            .into_iter()
            .map(|t| (t.offset_from, t.offset_to, t.text))
            .collect()
    }

    #[test]
    fn the_ascii_path_keeps_words_joined_as_uax29_does() {
        for s in [
            "user's e-mail 3.14 1,000.50 a:b a.b.c x_y __ _a a.1 1.a 1:2 a,b",
            "end. 'quoted' 12; 3;4 a::b a..b 'a'b \r\n x\r\ny",
        ] {
            assert_eq!(ascii_words(s), general_words(s), "{s}");
        }
    }

    /// The unfused analyzer: raw words through tantivy's filters.
    #[derive(Clone)]
    struct RawWords;

    impl Tokenizer for RawWords {
        type TokenStream<'a> = WordStream<'a>;
        fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
            let tokens = if text.is_ascii() {
                let mut out = Vec::new();
                let mut at = 0;
                while let Some((from, to)) = next_ascii_word(text.as_bytes(), at) {
                    out.push(Token {
                        offset_from: from,
                        offset_to: to,
                        position: out.len(),
                        text: text[from..to].to_string(),
                        position_length: 1,
                    });
                    at = to;
                }
                out
            } else {
                unicode_tokens(text)
            };
            // The replaying path of the fused stream, with words as found.
            WordStream {
                text,
                tokens: Some(tokens),
                at: 0,
                current: Token::default(),
            }
        }
    }

    fn chain_tokens(text: &str) -> Vec<Token> {
        let mut a = TextAnalyzer::builder(RawWords)
            .filter(tantivy::tokenizer::RemoveLongFilter::limit(MAX_TOKEN_BYTES))
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .build();
        let mut s = a.token_stream(text);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().clone());
        }
        out
    }

    #[test]
    fn the_fused_analyzer_is_the_filter_chain() {
        let long = "Z".repeat(63) + " " + &"Y".repeat(64) + " After";
        for s in [
            "Refund POLICY: café, naïve-user's e-mail 3.14 ÉCOLE Straße İstanbul",
            "我要退款 ab 返品ポリシー Привет, МИР हिन्दी 환불 ΣΊΣΥΦΟΣ",
            long.as_str(),
            &(long.clone() + " é"),
            "",
        ] {
            assert_eq!(tokens(s), chain_tokens(s), "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_fused_analyzer_agrees_with_the_filter_chain(
            s in "[aZ9_:.' ,\\-éÉßİ退Ж]{0,30}|[aZ9 ]{0,150}"
        ) {
            proptest::prop_assert_eq!(tokens(&s), chain_tokens(&s));
        }

        #[test]
        fn the_ascii_path_agrees_with_the_general_segmenter(
            s in "[ab9_:.',;\\- \r\n\t\"\\[{}]{0,40}"
        ) {
            proptest::prop_assert_eq!(ascii_words(&s), general_words(&s));
        }
    }
}
