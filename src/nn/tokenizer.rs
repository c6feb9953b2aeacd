//! Loading a BERT tokenizer: `tokenizer.json` when the checkpoint has one, else the WordPiece
//! vocabulary `vocab.txt` (older checkpoints such as `textattack/bert-base-uncased-SST-2`), built
//! into the same pipeline transformers' `BertTokenizerFast` uses.

use anyhow::{anyhow, Context, Result};
use std::path::Path;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer};

/// The special tokens of BERT's vocabulary.
const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Loads `tokenizer.json`, or builds BERT's tokenizer from `vocab.txt` (lower-casing unless the
/// `tokenizer_config.json` beside it says `"do_lower_case": false`).
pub fn load(path: &Path) -> Result<Tokenizer> {
    let is_vocab = path.file_name().is_some_and(|n| n == "vocab.txt");
    if !is_vocab {
        return Tokenizer::from_file(path).map_err(|e| anyhow!("{}: {e}", path.display()));
    }
    let lowercase = path
        .parent()
        .map(|d| d.join("tokenizer_config.json"))
        .filter(|p| p.is_file())
        .map(|p| -> Result<bool> {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", p.display()))?;
            Ok(v.get("do_lower_case")
                .and_then(|b| b.as_bool())
                .unwrap_or(true))
        })
        .transpose()?
        .unwrap_or(true);
    let vocab = path
        .to_str()
        .with_context(|| format!("{}: path is not UTF-8", path.display()))?;
    let model = WordPiece::from_file(vocab)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let id =
        |t: &str| model_id(&model, t).with_context(|| format!("{}: no {t} token", path.display()));
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
        .map_err(|e| anyhow!("{e}"))?;
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    tok.with_decoder(Some(WordPieceDecoder::default()));
    tok.add_special_tokens(SPECIAL.iter().map(|t| AddedToken::from(*t, true)))
        .map_err(|e| anyhow!("{e}"))?;
    Ok(tok)
}

fn model_id(model: &WordPiece, token: &str) -> Option<u32> {
    use tokenizers::Model;
    model.token_to_id(token)
}
