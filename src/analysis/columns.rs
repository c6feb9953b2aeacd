//! The columns of an extraction's token table ([`crate::analysis::extract::Embeddings::tokens`]),
//! named once: the extraction writes them, the analyses read them.

/// The sentence (or pair) the token belongs to: GLUE's `idx`, or the line number of a text file.
pub const SENTENCE_ID: &str = "sentence_id";
/// 0 for the first sentence of a pair, 1 for the second.
pub const SEGMENT: &str = "segment";
/// The token's position in its input, `[CLS]` at 0.
pub const POSITION: &str = "position";
/// The word piece as the tokenizer wrote it.
pub const TOKEN: &str = "token";
/// The word piece's vocabulary id.
pub const TOKEN_ID: &str = "token_id";
/// The word the piece belongs to (null for special tokens).
pub const WORD_ID: &str = "word_id";
/// Whether the token is `[CLS]`, `[SEP]` or another special token.
pub const IS_SPECIAL: &str = "is_special";
/// Whether the token continues a word (`##…`).
pub const IS_SUBWORD: &str = "is_subword";
/// The token's [`crate::data::tokens::TokenClass`] name.
pub const TOKEN_CLASS: &str = "token_class";
/// How often the token id occurs in the task's training split (null without one).
pub const FREQUENCY: &str = "frequency";
/// The sentence's label.
pub const LABEL: &str = "label";
