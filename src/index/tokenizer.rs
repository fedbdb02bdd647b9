//! The multilingual analyzer shared by indexing, querying and highlighting.
//!
//! Words are found with Unicode word boundaries (UAX #29, so Hindi vowel
//! signs, Cyrillic, Greek, Arabic, accents ... stay inside their words);
//! scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao,
//! Khmer, Myanmar) become one token per character, so a phrase query over
//! those characters finds any run of them ("退款" is the phrase 退 款).
//! Tokens are lower-cased and ASCII-folded ("Café" → "cafe"); very long
//! tokens (base64 blobs, minified data) are dropped.

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};
use unicode_segmentation::UnicodeSegmentation;

/// Name under which the analyzer is registered with tantivy.
pub const ANALYZER: &str = "tb_text";

/// Longest token kept, in bytes.
const MAX_TOKEN_BYTES: usize = 64;

/// The analyzer: word splitting, long-token removal, lower-casing, folding.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(WordTokenizer)
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
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

#[derive(Clone, Default)]
pub struct WordTokenizer;

pub struct WordStream {
    tokens: Vec<Token>,
    at: usize,
    current: Token,
}

impl TokenStream for WordStream {
    fn advance(&mut self) -> bool {
        match self.tokens.get(self.at) {
            Some(t) => {
                self.current = t.clone();
                self.at += 1;
                true
            }
            None => false,
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
    type TokenStream<'a> = WordStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream {
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
        WordStream {
            tokens,
            at: 0,
            current: Token::default(),
        }
    }
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
    }
}
