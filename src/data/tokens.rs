//! Token classes for the paper's local-structure analysis: punctuation, stop words, numbers,
//! other words, and the model's special tokens.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

/// The English stop-word list (NLTK's), one word per line.
const STOPWORDS: &str = include_str!("../../data/stopwords_en.txt");

fn stopwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        STOPWORDS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// What kind of token a word piece is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenClass {
    /// `[CLS]`, `[SEP]` and other special tokens.
    Special,
    /// Only punctuation or symbol characters (`.`, `,`, `'`, `--`, `$`).
    Punctuation,
    /// Digits, possibly with `.` or `,` (`1990`, `3.5`, `##00`).
    Number,
    /// A whole-word token in NLTK's English stop-word list (`the`, `of`, `is`).
    StopWord,
    /// Anything else, word pieces included.
    Word,
}

impl TokenClass {
    /// Every class, in the order tables list them.
    pub const ALL: [TokenClass; 5] = [
        TokenClass::Special,
        TokenClass::Punctuation,
        TokenClass::Number,
        TokenClass::StopWord,
        TokenClass::Word,
    ];

    /// Classifies a token as the tokenizer wrote it (`##` marks a continuation piece).
    ///
    /// ```
    /// use isotropy_lab::data::tokens::TokenClass;
    ///
    /// assert_eq!(TokenClass::of("the", false), TokenClass::StopWord);
    /// assert_eq!(TokenClass::of("##the", false), TokenClass::Word);
    /// assert_eq!(TokenClass::of("1990", false), TokenClass::Number);
    /// assert_eq!(TokenClass::of("--", false), TokenClass::Punctuation);
    /// assert_eq!(TokenClass::of("[CLS]", true).name(), "special");
    /// ```
    pub fn of(token: &str, is_special: bool) -> TokenClass {
        if is_special {
            return TokenClass::Special;
        }
        let (piece, continuation) = match token.strip_prefix("##") {
            Some(rest) if !rest.is_empty() => (rest, true),
            _ => (token, false),
        };
        if piece.chars().all(|c| !c.is_alphanumeric()) {
            TokenClass::Punctuation
        } else if piece.chars().any(|c| c.is_ascii_digit())
            && piece
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
        {
            TokenClass::Number
        } else if !continuation && stopwords().contains(piece.to_lowercase().as_str()) {
            TokenClass::StopWord
        } else {
            TokenClass::Word
        }
    }

    /// The lowercase name used in token tables.
    pub const fn name(self) -> &'static str {
        match self {
            TokenClass::Special => "special",
            TokenClass::Punctuation => "punctuation",
            TokenClass::Number => "number",
            TokenClass::StopWord => "stop word",
            TokenClass::Word => "word",
        }
    }
}

impl fmt::Display for TokenClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
